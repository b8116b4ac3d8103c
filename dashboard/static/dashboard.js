/* Shared by every dashboard page: calls to the public API, and small helpers. */
"use strict";

const Taskline = {
  /** Call the API; resolves to {status, body} whatever the status (never throws on 4xx/5xx). */
  async call(method, path, body) {
    const options = { method, headers: { Accept: "application/json" } };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, options);
    } catch (error) {
      return { status: 0, body: { detail: "the API did not answer: " + error } };
    }
    let parsed = null;
    try {
      parsed = await response.json();
    } catch (error) {
      parsed = { detail: response.statusText };
    }
    return { status: response.status, body: parsed };
  },

  /** One sentence about an API answer, for a person. */
  describe(answer) {
    const detail = answer.body && answer.body.detail;
    if (answer.status >= 200 && answer.status < 300) {
      const status = answer.body && answer.body.status;
      return answer.status + (status ? ": now " + status : ": done") +
        (answer.body && answer.body.cancel_requested && status === "processing" ? " (cancel requested)" : "");
    }
    return answer.status + ": " + (typeof detail === "string" ? detail : JSON.stringify(detail));
  },

  show(output, answer) {
    output.textContent = Taskline.describe(answer);
    output.className = answer.status >= 200 && answer.status < 300 ? "ok" : "refused";
  },

  /** Replace a badge's status class and text. */
  badge(element, status) {
    element.className = "badge " + status;
    element.textContent = status;
  },

  /** Follow GET /events with these query parameters; `onEvent(event)` per state change. */
  follow(query, onEvent, indicator) {
    const source = new EventSource("/events" + (query ? "?" + query : ""));
    source.onopen = () => { if (indicator) indicator.dataset.state = "on"; };
    source.onerror = () => { if (indicator) indicator.dataset.state = "off"; };
    source.onmessage = (message) => {
      let event;
      try { event = JSON.parse(message.data); } catch (error) { return; }
      if (event && event.task_id) onEvent(event);
    };
    return source;
  },
};

/* Filter forms leave out their empty fields, so the URL holds only real filters. */
for (const form of document.querySelectorAll("form.filters")) {
  form.addEventListener("submit", () => {
    for (const field of form.querySelectorAll("input, select")) {
      if (!field.value) field.disabled = true;
    }
  });
}

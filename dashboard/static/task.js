/* One task: Cancel and Retry call the public API and show its answer; the status follows /events. */
"use strict";

(function () {
  const box = document.getElementById("task");
  if (!box) return;
  const id = box.dataset.id;
  const status = document.getElementById("status");
  const answerOutput = document.getElementById("answer");
  const FINAL = ["completed", "failed", "canceled", "expired"];
  let eventsSeen = 0;  // an event newer than an action's answer wins over it

  function buttons(current) {
    document.getElementById("cancel").disabled = FINAL.includes(current);
    document.getElementById("retry").disabled = !["failed", "canceled"].includes(current);
  }

  async function act(button) {
    button.disabled = true;
    const seenBefore = eventsSeen;
    const answer = button.dataset.action === "cancel"
      ? await Taskline.call("PATCH", "/tasks/" + id, { status: "canceled" })
      : await Taskline.call("POST", "/tasks/" + id + "/retry");
    Taskline.show(answerOutput, answer);
    if (answer.body && answer.body.status && eventsSeen === seenBefore) {
      Taskline.badge(status, answer.body.status);
      buttons(answer.body.status);
    } else {
      buttons(status.textContent);
    }
  }

  for (const button of box.querySelectorAll("button[data-action]")) {
    button.addEventListener("click", () => act(button));
  }
  buttons(status.textContent);
  Taskline.follow("task_id=" + encodeURIComponent(id), (event) => {
    eventsSeen += 1;
    Taskline.badge(status, event.status);
    buttons(event.status);
  });
})();

/* Tasks list: new tasks and status changes arrive live from GET /events. */
"use strict";

(function () {
  const table = document.getElementById("tasks");
  if (!table || table.dataset.live !== "on") return;
  const body = table.tBodies[0];
  const MAX_ROWS = 200;
  let fetching = 0;
  const byStatus = new URLSearchParams(table.dataset.filters).has("status");

  function cell(row, className, text) {
    const td = row.insertCell();
    if (className) td.className = className;
    if (text !== undefined) td.textContent = text;
    return td;
  }

  function addRow(event) {
    const empty = body.querySelector("tr.empty-row");
    if (empty) empty.remove();
    const row = body.insertRow(0);
    row.dataset.id = event.task_id;
    row.className = "fresh";
    const link = document.createElement("a");
    link.href = "/dashboard/tasks/" + event.task_id;
    link.textContent = event.task_id;
    cell(row, "id").appendChild(link);
    const badge = document.createElement("span");
    Taskline.badge(badge, event.status);
    cell(row, "status").appendChild(badge);
    cell(row, "", event.kind);
    cell(row, "", event.queue);
    cell(row, "", event.owner || "-");
    cell(row, "num attempts", String(event.attempt));
    cell(row, "time", new Date(event.at * 1000).toISOString().slice(0, 19).replace("T", " ") + "Z");
    const message = cell(row, "message", "");
    while (body.rows.length > MAX_ROWS) body.deleteRow(body.rows.length - 1);
    if (fetching < 4) {  // fill in what the event does not carry, a few at a time
      fetching += 1;
      Taskline.call("GET", "/tasks/" + event.task_id).then((answer) => {
        fetching -= 1;
        if (answer.status !== 200) return;
        message.textContent = answer.body.message.slice(0, 60);
        row.querySelector(".attempts").textContent = answer.body.attempts + "/" + answer.body.max_attempts;
      });
    }
  }

  function update(event) {
    const row = body.querySelector('tr[data-id="' + event.task_id + '"]');
    if (row) {
      Taskline.badge(row.querySelector(".status .badge"), event.status);
      const attempts = row.querySelector(".attempts");
      const budget = attempts.textContent.split("/")[1];
      attempts.textContent = event.attempt + (budget ? "/" + budget : "");
    } else if (event.event === "created" || byStatus) {
      addRow(event);  // filtered by status, the stream sends only tasks that now match
    }
  }

  Taskline.follow(table.dataset.filters, update, document.getElementById("live"));
})();

/* Dead letters: retry the selected failed tasks through POST /tasks/{id}/retry. */
"use strict";

(function () {
  const table = document.getElementById("tasks");
  const button = document.getElementById("retry-selected");
  const output = document.getElementById("answer");
  if (!table || !button) return;
  const all = document.getElementById("select-all");
  if (all) {
    all.addEventListener("change", () => {
      for (const box of table.querySelectorAll("input.pick")) box.checked = all.checked;
    });
  }

  button.addEventListener("click", async () => {
    const picked = [...table.querySelectorAll("input.pick:checked")];
    if (!picked.length) {
      output.textContent = "select failed tasks first";
      output.className = "refused";
      return;
    }
    button.disabled = true;
    const outcomes = {};
    for (const box of picked) {  // one at a time: the API's own rules decide each
      const answer = await Taskline.call("POST", "/tasks/" + box.value + "/retry");
      outcomes[answer.status] = (outcomes[answer.status] || 0) + 1;
      const row = box.closest("tr");
      if (answer.status === 200) {
        Taskline.badge(row.querySelector(".status .badge"), answer.body.status);
        box.checked = false;
        box.disabled = true;
      } else {
        row.querySelector(".error").textContent = Taskline.describe(answer);
      }
    }
    const retried = outcomes[200] || 0;
    const refused = Object.entries(outcomes).filter(([code]) => code !== "200")
      .map(([code, n]) => n + " refused (" + code + ")");
    output.textContent = ["retried " + retried + " of " + picked.length, ...refused].join("; ");
    output.className = retried === picked.length ? "ok" : "refused";
    button.disabled = false;
  });
})();

/* Overview: the throughput chart, drawn as SVG from /dashboard/throughput, every 10 s. */
"use strict";

(function () {
  const svg = document.getElementById("throughput");
  if (!svg) return;
  const NS = "http://www.w3.org/2000/svg";
  const H = 220, LEFT = 44, RIGHT = 12, TOP = 12, BOTTOM = 26;
  let W = 900;

  function node(name, attributes, text) {
    const element = document.createElementNS(NS, name);
    for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
    if (text !== undefined) element.textContent = text;
    svg.appendChild(element);
    return element;
  }

  function niceMax(value) {
    if (value <= 5) return 5;
    const power = Math.pow(10, Math.floor(Math.log10(value)));
    for (const step of [1, 2, 5, 10]) if (step * power >= value) return step * power;
    return 10 * power;
  }

  function draw(data) {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    W = Math.max(300, Math.round(svg.getBoundingClientRect().width) || 900);
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    const minutes = data.minutes;
    const all = Object.values(data.series).flat();
    const top = niceMax(Math.max(0, ...all));
    const x = (i) => LEFT + (i * (W - LEFT - RIGHT)) / Math.max(1, minutes.length - 1);
    const y = (v) => H - BOTTOM - (v * (H - TOP - BOTTOM)) / top;
    for (const fraction of [0, 0.5, 1]) {
      const value = Math.round(top * fraction);
      node("line", { class: "axis", x1: LEFT, x2: W - RIGHT, y1: y(value), y2: y(value) });
      node("text", { x: LEFT - 6, y: y(value) + 4, "text-anchor": "end" }, String(value));
    }
    minutes.forEach((start, i) => {
      if (i % 5 !== 0 && i !== minutes.length - 1) return;
      const label = new Date(start * 1000).toISOString().slice(11, 16);
      const anchor = i === 0 ? "start" : i === minutes.length - 1 ? "end" : "middle";
      node("text", { x: x(i), y: H - 8, "text-anchor": anchor }, label);
    });
    for (const [name, values] of Object.entries(data.series)) {
      const points = values.map((v, i) => x(i).toFixed(1) + "," + y(v).toFixed(1)).join(" ");
      node("polyline", { class: name, points: points, "data-series": name });
    }
    svg.dataset.drawn = String(Date.now());
  }

  async function refresh() {
    const answer = await Taskline.call("GET", "/dashboard/throughput");
    if (answer.status === 200) draw(answer.body);
  }

  refresh();
  setInterval(refresh, 10000);
})();

// Draws every <div class="metric-chart" data-series='{"key":..,"steps":[..],"values":[..]}'> and every
// <div class="plot" data-figure='{"data":[..],"layout":{..}}'> (a whole Plotly figure built on the server)
// with the locally served Plotly.js. Charts are data attributes so pages stay plain server-rendered HTML.
(function () {
  function draw(el) {
    if (el.dataset.drawn === "1" || typeof Plotly === "undefined") return;
    var series = JSON.parse(el.dataset.series);
    var trace = { x: series.steps, y: series.values, mode: series.steps.length > 1 ? "lines+markers" : "markers",
                  type: "scatter", name: series.key, line: { color: "#3b5bdb", width: 2 }, marker: { size: 5 } };
    var layout = { title: { text: series.key, font: { size: 14 } }, margin: { l: 55, r: 20, t: 40, b: 45 },
                   xaxis: { title: { text: "step" }, zeroline: false }, yaxis: { zeroline: false },
                   paper_bgcolor: "#ffffff", plot_bgcolor: "#ffffff", height: 300 };
    Plotly.newPlot(el, [trace], layout, { displaylogo: false, responsive: true, staticPlot: false });
    el.dataset.drawn = "1";
  }
  function drawFigure(el) {
    if (el.dataset.drawn === "1" || typeof Plotly === "undefined") return;
    var fig = JSON.parse(el.dataset.figure);
    var layout = Object.assign({ margin: { l: 55, r: 20, t: 40, b: 45 }, paper_bgcolor: "#ffffff",
                                 plot_bgcolor: "#ffffff", height: 320 }, fig.layout || {});
    Plotly.newPlot(el, fig.data || [], layout, { displaylogo: false, responsive: true });
    el.dataset.drawn = "1";
  }
  function drawAll(root) {
    (root || document).querySelectorAll(".metric-chart[data-series]").forEach(draw);
    (root || document).querySelectorAll(".plot[data-figure]").forEach(drawFigure);
  }
  document.addEventListener("DOMContentLoaded", function () { drawAll(document); });
  document.addEventListener("htmx:afterSwap", function (e) { drawAll(e.target); });
})();

/* Staff console: draws each <div class="chart" data-chart="{ECharts option}"> with the
   ECharts copy served from /static/vendor (never a CDN). The numbers are also in the table
   beside each chart. */
(function () {
  "use strict";
  function draw() {
    if (!window.echarts) { return; }
    var charts = [];
    document.querySelectorAll(".chart[data-chart]").forEach(function (el) {
      var chart = window.echarts.init(el, null, { renderer: "canvas" });
      chart.setOption(JSON.parse(el.getAttribute("data-chart")));
      el.setAttribute("data-drawn", "true");
      charts.push(chart);
    });
    window.addEventListener("resize", function () {
      charts.forEach(function (c) { c.resize(); });
    });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", draw);
  } else {
    draw();
  }
})();

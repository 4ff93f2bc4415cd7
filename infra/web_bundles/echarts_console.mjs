// The parts of Apache ECharts the staff console draws with, and nothing else: line and bar
// series on a category axis, with a title, a tooltip and a (scrolling) legend, on canvas.
// infra/build_web_bundles.sh bundles this with esbuild into one minified script (and its
// gzip) that sets window.echarts, as the full echarts.min.js did. A chart option using a
// part not registered here would draw nothing: add the part here with the option.
import * as echarts from "echarts/core";
import { BarChart, LineChart } from "echarts/charts";
import {
  GridComponent,
  LegendComponent,
  TitleComponent,
  TooltipComponent,
} from "echarts/components";
import { CanvasRenderer } from "echarts/renderers";

echarts.use([
  BarChart,
  LineChart,
  GridComponent,
  LegendComponent,
  TitleComponent,
  TooltipComponent,
  CanvasRenderer,
]);
window.echarts = echarts;

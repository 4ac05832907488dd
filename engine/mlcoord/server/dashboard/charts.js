// Charts with the plotly.js the HTML reports use (served from the plotly package, loaded only when a
// page draws a chart: it is ~4.8 MB). Same look as the reports: white background, light grid, legend on top.

let loading = null;

function plotly() {
  if (window.Plotly) return Promise.resolve(window.Plotly);
  if (!loading) {
    loading = new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = "dashboard/vendor/plotly.min.js";
      script.addEventListener("load", () => resolve(window.Plotly));
      script.addEventListener("error", () => reject(new Error("plotly.js did not load")));
      document.head.append(script);
    });
  }
  return loading;
}

const CONFIG = {displaylogo: false, responsive: true, modeBarButtonsToRemove: ["select2d", "lasso2d", "autoScale2d"]};

export function layout(extra = {}) {
  return {
    height: 380, margin: {l: 60, r: 20, t: 30, b: 40},
    legend: {orientation: "h", yanchor: "bottom", y: 1.01, x: 0},
    paper_bgcolor: "#fff", plot_bgcolor: "#fff", font: {size: 12, color: "#1d2733"},
    xaxis: {gridcolor: "#eceff3", ...(extra.xaxis || {})},
    yaxis: {gridcolor: "#eceff3", ...(extra.yaxis || {})},
    ...Object.fromEntries(Object.entries(extra).filter(([k]) => k !== "xaxis" && k !== "yaxis")),
  };
}

/** Draw into ``element`` (a div in the page); redraws in place on later calls. */
export async function draw(element, traces, extraLayout = {}) {
  const Plotly = await plotly();
  if (!element.isConnected) return;
  await Plotly.react(element, traces, layout(extraLayout), CONFIG);
  element.dataset.drawn = "1";
}

/** ns since the epoch -> a UTC date string plotly reads as such. */
export function dates(ns) {
  return ns.map(t => new Date(t / 1e6).toISOString().slice(0, 19).replace("T", " "));
}

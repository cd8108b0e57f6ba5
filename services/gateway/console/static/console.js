// The console's small script: draws the charts whose data the page carries, and the live event stream.
"use strict";

function chartData() {
  const node = document.getElementById("chart-data");
  return node ? JSON.parse(node.textContent) : {};
}

function drawCharts() {
  if (typeof Chart === "undefined") return;
  const data = chartData();
  const sentiment = document.getElementById("chart-sentiment");
  if (sentiment && data.sentiment && data.sentiment.values.length) {
    new Chart(sentiment, {
      type: "line",
      data: { labels: data.sentiment.labels, datasets: [{ label: "sentiment score", data: data.sentiment.values, tension: 0.25 }] },
      options: { maintainAspectRatio: false, scales: { y: { min: 0, max: 1 } }, plugins: { legend: { display: false } } },
    });
  }
  const churn = document.getElementById("chart-churn");
  if (churn && data.churn && data.churn.values.length) {
    new Chart(churn, {
      type: "bar",
      data: { labels: data.churn.labels.map((_, i) => String(i + 1)), datasets: [{ label: "push on risk", data: data.churn.values,
        backgroundColor: data.churn.values.map((v) => (v > 0 ? "#b3261e" : "#1e6b3a")) }] },
      options: { indexAxis: "y", maintainAspectRatio: false,
        plugins: { legend: { display: false }, tooltip: { callbacks: { title: (items) => data.churn.labels[items[0].dataIndex] } } },
        scales: { y: { title: { display: true, text: "reason" } }, x: { title: { display: true, text: "push on the log-odds of leaving" } } } },
    });
  }
  const scatter = document.getElementById("chart-scatter");
  if (scatter && data.scatter && data.scatter.length) {
    const groups = {};
    for (const p of data.scatter) (groups[p.cluster] = groups[p.cluster] || []).push(p);
    new Chart(scatter, {
      type: "scatter",
      data: { datasets: Object.entries(groups).map(([name, points]) => ({ label: name, data: points })) },
      options: { maintainAspectRatio: false,
        scales: { x: { title: { display: true, text: "days since last purchase" } }, y: { title: { display: true, text: "average order value" } } } },
    });
  }
}

function liveEvents() {
  const list = document.getElementById("events");
  const status = document.getElementById("live-status");
  if (!list || !status) return;
  const empty = document.getElementById("events-empty");
  const source = new EventSource("/console/live/stream");
  const say = (state, text) => { status.dataset.state = state; status.textContent = text; };
  source.addEventListener("status", (message) => {
    const info = JSON.parse(message.data);
    say("live", info.missing.length ? "Listening (waiting for topic " + info.missing.join(", ") + " to exist)." : "Listening: new events appear below as they arrive.");
  });
  source.onmessage = (message) => {
    const template = document.createElement("template");
    template.innerHTML = message.data.trim();
    const item = template.content.firstElementChild;
    if (!item || list.querySelector('[data-seq="' + item.dataset.seq + '"]')) return;
    list.prepend(item);
    if (empty) empty.hidden = true;
    while (list.children.length > 300) list.lastElementChild.remove();
  };
  source.onerror = () => say("lost", "Connection lost; reconnecting…");
  source.onopen = () => { if (status.dataset.state !== "live") say("connecting", "Connected; starting to listen…"); };
}

document.addEventListener("DOMContentLoaded", () => { drawCharts(); liveEvents(); });

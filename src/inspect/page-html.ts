// The inspector's page: markup and styles. Its script is page/inspector.ts,
// served as /inspector.js; everything else it shows comes from the
// inspector's own endpoints. Nothing is loaded from anywhere else.
export const PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>mailroom · actors</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
  :root { --fg: #1d2330; --muted: #667085; --line: #d8dde6; --accent: #0a7a55; --warn: #b54708; --bg: #f7f8fa; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 13px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg); }
  header { display: flex; gap: 16px; align-items: center; padding: 8px 16px; background: #fff; border-bottom: 1px solid var(--line); flex-wrap: wrap; }
  header h1 { font-size: 15px; margin: 0 8px 0 0; }
  #mode { font-weight: 600; padding: 2px 8px; border-radius: 10px; background: #e6f6ef; color: var(--accent); }
  #mode.replay { background: #fff4e5; color: var(--warn); }
  #mode.off { background: #fdecea; color: #b42318; }
  main { display: grid; grid-template-columns: 260px 1fr 360px; gap: 12px; padding: 12px 16px; }
  section, nav, aside { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px; min-width: 0; }
  h2 { font-size: 12px; text-transform: uppercase; letter-spacing: .06em; color: var(--muted); margin: 4px 0 8px; }
  #actor-list { list-style: none; margin: 0; padding: 0; }
  #actor-list li { display: flex; justify-content: space-between; gap: 8px; padding: 4px 6px; border-radius: 6px; cursor: pointer; }
  #actor-list li.child { color: var(--muted); cursor: default; }
  #actor-list li.selected { background: #eef4ff; }
  #actor-list .state { font-family: ui-monospace, monospace; font-size: 12px; color: var(--accent); white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
  #chart { overflow: auto; max-height: 70vh; }
  #chart svg { display: block; }
  #context { font: 12px/1.35 ui-monospace, monospace; white-space: pre-wrap; word-break: break-word; max-height: 40vh; overflow: auto; background: var(--bg); padding: 8px; border-radius: 6px; margin: 0; }
  .timeline { margin: 6px 0 10px; }
  .timeline .name { display: flex; justify-content: space-between; font-family: ui-monospace, monospace; font-size: 12px; }
  .bar { display: flex; height: 12px; border-radius: 4px; overflow: hidden; background: #eef0f3; margin-top: 2px; }
  .bar span { height: 100%; }
  .legend { display: flex; flex-wrap: wrap; gap: 4px 10px; font-size: 11px; color: var(--muted); }
  .legend i { display: inline-block; width: 9px; height: 9px; border-radius: 2px; margin-right: 3px; vertical-align: -1px; }
  #log-panel, #messages-panel { margin: 0 16px 16px; }
  #messages-panel .cols { display: grid; grid-template-columns: minmax(320px, 1fr) 2fr; gap: 12px; }
  #message-list { list-style: none; margin: 0; padding: 0; max-height: 30vh; overflow: auto; font: 12px ui-monospace, monospace; }
  #message-list li { display: flex; justify-content: space-between; gap: 8px; padding: 3px 6px; border-radius: 6px; cursor: pointer; }
  #message-list li.selected { background: #eef4ff; }
  #message-list .state { color: var(--accent); }
  #message-search { font: inherit; padding: 3px 8px; border: 1px solid var(--line); border-radius: 6px; width: 100%; margin-bottom: 6px; }
  #message-life { font: 12px ui-monospace, monospace; }
  #log-tools { display: flex; gap: 8px; align-items: center; margin-bottom: 6px; }
  #log-wrap { max-height: 32vh; overflow: auto; }
  table { border-collapse: collapse; width: 100%; font: 12px ui-monospace, monospace; }
  th, td { text-align: left; padding: 2px 8px; border-bottom: 1px solid #eef0f3; white-space: nowrap; }
  td.data { white-space: normal; color: var(--muted); }
  tr.current { background: #fff4e5; }
  button, select, label.file { font: inherit; padding: 3px 10px; border: 1px solid var(--line); border-radius: 6px; background: #fff; cursor: pointer; }
  label.file input { display: none; }
  a { color: #1a4d8f; }
</style>
</head>
<body>
<header>
  <h1>mailroom actors</h1>
  <span id="mode">connecting…</span>
  <a id="export" href="/events.jsonl" download="mailroom-events.jsonl">Export JSONL</a>
  <label class="file">Load a recording…<input id="load" type="file" accept=".jsonl,application/x-ndjson"></label>
  <span id="replay" hidden>
    <button id="back" type="button">◀ back</button>
    <button id="step" type="button">step ▶</button>
    <span id="position"></span>
    <button id="live" type="button">back to live</button>
  </span>
</header>
<main>
  <nav><h2>Actors</h2><ul id="actor-list"></ul></nav>
  <section><h2 id="chart-title">Chart</h2><div id="chart"></div></section>
  <aside>
    <h2>Context <span id="context-actor"></span></h2>
    <pre id="context">select an actor</pre>
    <h2>Connections</h2>
    <div id="timelines"></div>
  </aside>
</main>
<section id="messages-panel">
  <h2>Messages <span id="message-count"></span></h2>
  <div class="cols">
    <div>
      <input id="message-search" type="search" placeholder="search by Message-ID" autocomplete="off">
      <ul id="message-list"></ul>
    </div>
    <div>
      <h2 id="message-title">select a message</h2>
      <table id="message-life"><thead><tr><th>time</th><th>state</th><th>attempts</th><th>connection</th><th>relay</th></tr></thead><tbody></tbody></table>
    </div>
  </div>
</section>
<section id="log-panel">
  <h2>Events</h2>
  <div id="log-tools">
    <select id="filter"><option value="">all actors</option></select>
    <button id="pause" type="button">pause</button>
    <span id="log-count"></span>
  </div>
  <div id="log-wrap">
    <table id="log">
      <thead><tr><th>time</th><th>actor</th><th>event</th><th>from → to</th><th>data</th></tr></thead>
      <tbody></tbody>
    </table>
  </div>
</section>
<script type="module" src="/inspector.js"></script>
</body>
</html>
`;

//! The live status page: one static HTML file that polls `/api/v1/status` every second and
//! renders the same tables `tandem status` prints. No build step, no external assets.

pub(crate) const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Tandem status</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 2rem; color: #1d2330; background: #f7f8fa; }
  h1 { font-size: 1.3rem; margin: 0 0 .2rem; }
  #meta { color: #667; margin-bottom: 1.5rem; }
  section { background: #fff; border: 1px solid #dde1e7; border-radius: 6px; padding: .8rem 1rem; margin-bottom: 1rem; }
  h2 { font-size: 1rem; margin: 0 0 .5rem; }
  table { border-collapse: collapse; width: 100%; }
  th, td { text-align: left; padding: .25rem .6rem; border-bottom: 1px solid #eef0f3; font-variant-numeric: tabular-nums; }
  th { font-size: .75rem; text-transform: uppercase; color: #667; }
  .online, .ok, .healthy, .active { color: #137333; font-weight: 600; }
  .degraded, .down, .failed, .error, .unhealthy { color: #b3261e; font-weight: 600; }
  .checking, .lagging, .standby { color: #a56300; font-weight: 600; }
  .disabled { color: #888; }
  .bar { display: inline-block; height: .6rem; background: #4a7bd0; border-radius: 2px; vertical-align: middle; margin-right: .4rem; }
</style>
</head>
<body>
<h1>Tandem</h1>
<div id="meta">connecting…</div>
<div id="tables"></div>
<script>
const esc = s => String(s).replace(/[&<>"]/g, c => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]));
function cell(v, col) {
  const s = String(v);
  if (/share/i.test(col) && /^\d+(\.\d+)?%$/.test(s)) {
    return `<td><span class="bar" style="width:${parseFloat(s)}px"></span>${esc(s)}</td>`;
  }
  return `<td class="${esc(s.split(' ')[0].toLowerCase())}">${esc(s)}</td>`;
}
async function tick() {
  try {
    const r = await fetch('/api/v1/status', {cache: 'no-store'});
    const doc = await r.json();
    document.getElementById('meta').textContent = `version ${doc.version} · updated ${new Date().toLocaleTimeString()}`;
    document.getElementById('tables').innerHTML = doc.tables.map(t => `
      <section><h2>${esc(t.title)}</h2><table>
        <tr>${t.columns.map(c => `<th>${esc(c)}</th>`).join('')}</tr>
        ${t.rows.length ? t.rows.map(r => `<tr>${r.map((v, i) => cell(v, t.columns[i] || '')).join('')}</tr>`).join('') : `<tr><td colspan="${t.columns.length}">(none)</td></tr>`}
      </table></section>`).join('');
  } catch (e) {
    document.getElementById('meta').textContent = `cannot reach the admin API: ${e}`;
  }
}
tick();
setInterval(tick, 1000);
</script>
</body>
</html>
"#;

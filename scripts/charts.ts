// npm run charts: one SVG per machine into docs/, drawn from the machine
// definitions by the inspector's own renderer (src/inspect/chart.ts). The
// SVGs are committed; test/charts.test.ts fails when a machine changed and
// its chart was not drawn again.
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { MACHINES, chartFile, drawChart } from '../src/inspect/machines.js';

const DOCS = fileURLToPath(new URL('../../docs/', import.meta.url));

for (const machine of MACHINES) {
  const file = `${DOCS}${chartFile(machine)}`;
  writeFileSync(file, await drawChart(machine));
  process.stdout.write(`wrote ${file}\n`);
}

// Send tracking calls with a real Node SDK to a collector; print what was sent, one JSON per line.
//   node send_events.js <segment|rudder> <url> <write key> <count>
// Even calls carry an explicit historical `timestamp` (an import, an offline queue); odd ones none.
const [sdk, url, writeKey, countArg] = process.argv.slice(2);
const count = Number(countArg);
const base = Date.parse('2025-06-01T10:00:00.000Z');

function client() {
  if (sdk === 'segment') {
    const { Analytics } = require('@segment/analytics-node');
    return new Analytics({ writeKey, host: url, flushAt: 50, maxRetries: 3 });
  }
  const Analytics = require('@rudderstack/rudder-sdk-node');
  return new Analytics(writeKey, { dataPlaneUrl: url, flushAt: 50, flushInterval: 200, logLevel: 'error' });
}

async function main() {
  const c = client();
  const sent = [];
  for (let i = 0; i < count; i++) {
    const msg = { userId: `node-${sdk}-${i % 7}`, messageId: `${sdk}-${process.pid}-${i}`,
                  event: 'Product Viewed', properties: { sku: `SKU-${i}` } };
    if (i % 2 === 0) msg.timestamp = new Date(base + i * 1000);
    c.track(msg);
    sent.push({ messageId: msg.messageId, timestamp: msg.timestamp ? msg.timestamp.toISOString() : null });
  }
  if (sdk === 'segment') {
    await c.closeAndFlush({ timeout: 20000 });
  } else {
    await new Promise((resolve, reject) => c.flush((err) => (err ? reject(err) : resolve())));
  }
  for (const s of sent) console.log(JSON.stringify(s));
}

main().then(() => process.exit(0), (err) => { console.error(String(err)); process.exit(1); });

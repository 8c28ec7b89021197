// Delivery bookkeeping for one receiving connection (or one user across reconnects).
//
// A receiver declares what it must get (expect), feeds every message it gets (receive), and
// reports once at the end (report). Metrics, summed over all receivers:
//   deliveries_expected / deliveries_received / deliveries_missing  counters
//   deliveries_duplicate   an expected message seen twice
//   deliveries_unexpected  a message nobody expected this receiver to get
//   offset_gaps            a message whose (epoch, offset) does not follow the previous one
//   delivery_ok            Rate: one sample per receiver, true only when it expected > 0
//                          messages, got every one, nothing twice, nothing unexpected, no gap
//   receivers_done         Counter of reports: the threshold demands exactly the number of
//                          receivers the scenario starts, so a VU that died cannot pass silently
//   delivery_latency       Trend: publish call (k6 clock) → arrival at the receiver
import { Counter, Rate, Trend } from 'k6/metrics';
import { LATENCY_P95_MS, LATENCY_P99_MS } from './config.js';

export const deliveriesExpected = new Counter('deliveries_expected');
export const deliveriesReceived = new Counter('deliveries_received');
export const deliveriesMissing = new Counter('deliveries_missing');
export const deliveriesDuplicate = new Counter('deliveries_duplicate');
export const deliveriesUnexpected = new Counter('deliveries_unexpected');
export const offsetGaps = new Counter('offset_gaps');
export const deliveryOk = new Rate('delivery_ok');
export const receiversDone = new Counter('receivers_done');
export const deliveryLatency = new Trend('delivery_latency', true);

export class Tally {
  constructor(name) {
    this.name = name;
    this.expected = new Set();
    this.received = new Set();
    this.duplicates = 0;
    this.unexpected = 0;
    this.gaps = 0;
    this.gapNotes = [];
    this.cursors = new Map(); // channel → { epoch, offset } of the last message (or subscribe point)
  }

  expect(key) {
    this.expected.add(key);
  }

  // The position a channel starts from (welcome / subscribe reply): the next message must be offset + 1.
  setCursor(channel, epoch, offset) {
    this.cursors.set(channel, { epoch, offset });
  }

  cursor(channel) {
    return this.cursors.get(channel);
  }

  // Checks (epoch, offset) continuity on the message's channel; then counts `key`.
  receive(frame, key, sentMs) {
    const c = this.cursors.get(frame.channel);
    if (c && c.epoch && (frame.epoch !== c.epoch || frame.offset !== c.offset + 1)) {
      this.gaps++;
      if (this.gapNotes.length < 3) {
        this.gapNotes.push(`${frame.channel} ${c.epoch}:${c.offset} → ${frame.epoch}:${frame.offset}`);
      }
    }
    if (!c || !c.epoch || frame.epoch !== c.epoch || frame.offset > c.offset) {
      this.cursors.set(frame.channel, { epoch: frame.epoch, offset: frame.offset });
    }
    if (!this.expected.has(key)) {
      this.unexpected++;
    } else if (this.received.has(key)) {
      this.duplicates++;
    } else {
      this.received.add(key);
      if (sentMs) deliveryLatency.add(Date.now() - sentMs);
    }
  }

  complete() {
    return this.received.size === this.expected.size;
  }

  missing() {
    return this.expected.size - this.received.size;
  }

  // Adds this receiver's numbers to the metrics once; returns whether it is all good.
  report(extraOk = true, why = '') {
    const missing = this.missing();
    const ok =
      extraOk &&
      this.expected.size > 0 &&
      missing === 0 &&
      this.duplicates === 0 &&
      this.unexpected === 0 &&
      this.gaps === 0;
    deliveriesExpected.add(this.expected.size);
    deliveriesReceived.add(this.received.size);
    deliveriesMissing.add(missing);
    deliveriesDuplicate.add(this.duplicates);
    deliveriesUnexpected.add(this.unexpected);
    offsetGaps.add(this.gaps);
    deliveryOk.add(ok);
    receiversDone.add(1);
    if (!ok) {
      const lost = [...this.expected].filter((k) => !this.received.has(k)).slice(0, 5);
      console.warn(
        `${this.name}: expected ${this.expected.size} received ${this.received.size} ` +
          `dup ${this.duplicates} unexpected ${this.unexpected} gaps ${this.gaps}` +
          (lost.length ? ` missing e.g. ${lost.join(',')}` : '') +
          (this.gapNotes.length ? ` gaps e.g. ${this.gapNotes.join('; ')}` : '') +
          (why ? ` (${why})` : ''),
      );
    }
    return ok;
  }
}

// Thresholds every delivery script shares; `receivers` is how many Tally reports must come in.
export function deliveryThresholds(receivers) {
  return {
    delivery_ok: ['rate==1'],
    receivers_done: [`count==${receivers}`],
    deliveries_expected: ['count>0'],
    deliveries_missing: ['count==0'],
    deliveries_duplicate: ['count==0'],
    deliveries_unexpected: ['count==0'],
    offset_gaps: ['count==0'],
    delivery_latency: [`p(95)<${LATENCY_P95_MS}`, `p(99)<${LATENCY_P99_MS}`],
    ws_error_frames: ['count==0'],
    ws_unexpected_closes: ['count==0'],
    checks: ['rate==1'],
  };
}

// A browser's own EventSource on /sse resumes without loss across a server
// restart: the server is a node on Redis (history survives it), stopped and
// started again on the same port. Usage: node eventsource.mjs BASE_URL CHANNEL
//
// The Go test publishes on each STEP: "first" 1..10 while the stream is
// up; "stop" stops the node; "down" publishes 11..20 through another node
// while the browser is reconnecting; "start" starts the node again and at
// once publishes 21..30 through it; "after" publishes 31..40 once the
// browser is back. The browser must get 1..40, each once, in order, with
// no help from the page: EventSource reconnects and sends Last-Event-ID.
import { launch, newPage, step, check, main } from "./lib.mjs";

const range = (a, b) => Array.from({ length: b - a + 1 }, (_, i) => a + i);

main(async ([base, channel]) => {
  const browser = await launch();
  const errors = [];
  const page = await newPage(browser, errors);
  await page.goto(base + "/");
  await page.evaluate((ch) => {
    const s = (window.es = { data: [], ids: [], subscribed: [], opens: 0, errors: 0, serverErrors: [], states: [] });
    const src = (window.source = new EventSource("/sse?channel=" + encodeURIComponent(ch)));
    src.addEventListener("open", () => { s.opens++; s.states.push("open"); });
    src.addEventListener("error", (e) => {
      s.errors++;
      s.states.push("error:" + src.readyState);
      if (e.data) s.serverErrors.push(e.data); // an "error" event the server sent
    });
    src.addEventListener("subscribed", (e) => s.subscribed.push(JSON.parse(e.data)));
    src.addEventListener("message", (e) => {
      s.data.push(JSON.parse(e.data).data);
      s.ids.push(e.lastEventId);
    });
  }, channel);
  const es = () => page.evaluate(() => window.es);
  const until = (fn, arg) => page.waitForFunction(fn, arg);
  const expectData = async (n, what) => {
    try {
      await until((n) => window.es.data.length >= n, n);
    } catch (e) {
      throw new Error(`${what}: waiting for ${n} messages: ${JSON.stringify(await es())}`);
    }
    const s = await es();
    check(JSON.stringify(s.data) == JSON.stringify(range(1, n)), `${what}: received ${JSON.stringify(s.data)}, want 1..${n} once each in order`);
  };

  await until(() => window.es.subscribed.length == 1 && window.es.opens == 1);
  await step("first");
  await expectData(10, "before the restart");
  const first = (await es()).subscribed[0];
  console.log(`subscribed at ${first.epoch}:${first.offset}, got 1..10, last id ${(await es()).ids[9]}`);

  await step("stop");
  // The stream ended: EventSource is reconnecting on its own.
  await until(() => window.es.errors >= 1 && window.source.readyState == EventSource.CONNECTING);
  await step("down");
  await step("start");
  await expectData(30, "after the restart");
  await until(() => window.es.subscribed.length == 2);
  let s = await es();
  check(s.subscribed[1].recovered === true, "resubscribe after the restart: " + JSON.stringify(s.subscribed[1]));
  check(s.subscribed[1].epoch == first.epoch, `epoch changed across the restart: ${first.epoch} -> ${s.subscribed[1].epoch}`);
  console.log(`restart: ${s.errors} error event(s), states ${s.states.join(" ")}; resumed (recovered: true) with 11..30`);

  await step("after");
  await expectData(40, "live after the restart");
  s = await es();
  check(s.opens == 2, "opens: " + s.opens);
  check(s.serverErrors.length == 0, "server error events: " + JSON.stringify(s.serverErrors));
  let last = 0;
  for (const id of s.ids) {
    const [epoch, off] = id.split(":");
    check(epoch == first.epoch && Number(off) > last, "event ids not increasing in one epoch: " + JSON.stringify(s.ids));
    last = Number(off);
  }
  console.log(`got 1..40 once each in order; ids ${s.ids[0]} .. ${s.ids[39]}`);
  await page.evaluate(() => window.source.close());

  // Chromium logs the refused reconnects itself while the server is down.
  const real = errors.filter((e) => !/ERR_CONNECTION_REFUSED|Failed to load resource/.test(e));
  check(real.length == 0, "errors in the page:\n" + real.join("\n"));
  await browser.close();
});

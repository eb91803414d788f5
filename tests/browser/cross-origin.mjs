// CORS as a browser enforces it: a tiny page on an allowed origin registers, logs in and
// fetches the user from the gateway with fetch(); the same page on another origin is blocked
// by the browser itself (the preflight is refused, so the request is never sent).
//   GATEWAY_URL=... ALLOWED_PORT=... BLOCKED_PORT=... TEST_USERNAME=... node tests/browser/cross-origin.mjs
// The allowed page registers TEST_USERNAME; the blocked one tries TEST_USERNAME-blocked, which
// the Rust test then checks was never registered.
import { createServer } from "node:http";
import { check, DEADLINE_MS, env, run } from "./browser.mjs";

const gateway = env("GATEWAY_URL");
const ports = { allowed: Number(env("ALLOWED_PORT")), blocked: Number(env("BLOCKED_PORT")) };
const username = env("TEST_USERNAME");

const PAGE = "<!doctype html><title>front end</title><p>a front end on its own origin</p>";

/** A page on 127.0.0.1:`port`, an origin of its own. */
function serve(port) {
  const server = createServer((_, response) => {
    response.writeHead(200, { "content-type": "text/html; charset=utf-8" });
    response.end(PAGE);
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => resolve(server));
  });
}

/** What the front end does, run inside the page: register, log in, fetch the user. */
async function frontEnd({ gateway, username }) {
  const call = async (method, path, body, token) => {
    const headers = {};
    if (body) headers["content-type"] = "application/json";
    if (token) headers["authorization"] = `Bearer ${token}`;
    try {
      const response = await fetch(gateway + path, {
        method,
        headers,
        body: body && JSON.stringify(body),
      });
      return {
        status: response.status,
        json: await response.json(),
        requestId: response.headers.get("x-request-id"),
      };
    } catch (error) {
      return { blocked: `${error.name}: ${error.message}` };
    }
  };
  const credentials = { username, password: "secret-password-1" };
  const registered = await call("POST", "/api/user/register", credentials);
  if (registered.blocked) return { registered };
  const loggedIn = await call("POST", "/api/user/login", credentials);
  const user = await call("GET", `/api/user/${loggedIn.json.data.user_id}`, null,
    loggedIn.json.data.token);
  return { registered, loggedIn, user };
}

await run("cross-origin", async (browser) => {
  const servers = [await serve(ports.allowed), await serve(ports.blocked)];
  try {
    const context = await browser.newContext();
    const page = await context.newPage();
    page.setDefaultTimeout(DEADLINE_MS);
    const corsErrors = [];
    page.on("console", (message) => {
      if (/CORS/.test(message.text())) corsErrors.push(message.text());
    });

    await page.goto(`http://127.0.0.1:${ports.allowed}/`);
    const allowed = await page.evaluate(frontEnd, { gateway, username });
    const show = JSON.stringify(allowed);
    check(allowed.registered.status === 200 && allowed.registered.json.code === 0, show);
    check(allowed.loggedIn.json.code === 0, show);
    check(allowed.user.json.code === 0 && allowed.user.json.data.user.username === username, show);
    check(allowed.user.requestId, `x-request-id is not readable by the page: ${show}`);
    check(corsErrors.length === 0, `CORS errors on the allowed origin: ${corsErrors}`);

    await page.goto(`http://127.0.0.1:${ports.blocked}/`);
    const blocked = await page.evaluate(frontEnd, { gateway, username: `${username}-blocked` });
    check(
      blocked.registered.blocked && blocked.registered.blocked.startsWith("TypeError"),
      `the browser let another origin call the gateway: ${JSON.stringify(blocked)}`,
    );
    // The browser says why, naming the origin.
    const deadline = Date.now() + DEADLINE_MS;
    while (!corsErrors.some((text) => text.includes(`127.0.0.1:${ports.blocked}`))) {
      check(Date.now() < deadline, `no CORS error in the console: ${corsErrors}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    console.log(`blocked as expected: ${corsErrors[0]}`);
  } finally {
    for (const server of servers) server.close();
  }
});

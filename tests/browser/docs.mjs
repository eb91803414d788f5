// The /docs page in a real browser: register, log in and fetch the user through Swagger UI,
// the token applied by the page itself; every request stays on the gateway; a screenshot.
//   GATEWAY_URL=http://127.0.0.1:8889 ARTIFACTS_DIR=target/browser node tests/browser/docs.mjs
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { DEADLINE_MS, check, env, run } from "./browser.mjs";

const gateway = env("GATEWAY_URL");
const artifacts = env("ARTIFACTS_DIR");
const username = `docs-${Date.now()}`;
const password = "secret-password-1";

await run("docs page", async (browser) => {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  page.setDefaultTimeout(DEADLINE_MS);
  const elsewhere = [];
  const problems = [];
  page.on("request", (request) => {
    const url = request.url();
    if (!url.startsWith(`${gateway}/`) && !url.startsWith("data:")) elsewhere.push(url);
  });
  page.on("console", (message) => {
    if (message.type() === "error") problems.push(message.text());
  });
  page.on("pageerror", (error) => problems.push(String(error)));

  await page.goto(`${gateway}/docs`);
  const operation = (path) =>
    page.locator(".opblock", { has: page.locator(`[data-path="${path}"]`) });

  // Opens an operation, runs it with `fill`, and returns its answer (to `pathname`) as JSON.
  async function execute(path, fill, pathname = path) {
    const block = operation(path);
    await block.locator(".opblock-summary-control").click();
    await fill(block);
    const answered = page.waitForResponse(
      (response) => new URL(response.url()).pathname === pathname,
    );
    await block.locator("button.execute").click();
    const response = await answered;
    check(response.status() === 200, `${path}: HTTP ${response.status()}`);
    // The page shows the answer, too.
    await block.locator(".live-responses-table .response-col_status", { hasText: "200" })
      .first().waitFor();
    return { json: await response.json(), request: response.request() };
  }

  const body = JSON.stringify({ username, password });
  const fillBody = async (block) => block.locator("textarea.body-param__text").fill(body);

  const registered = await execute("/api/user/register", fillBody);
  check(registered.json.code === 0, `register: ${JSON.stringify(registered.json)}`);

  const loggedIn = await execute("/api/user/login", fillBody);
  check(loggedIn.json.code === 0, `login: ${JSON.stringify(loggedIn.json)}`);
  const token = loggedIn.json.data.token;
  const userId = String(loggedIn.json.data.user_id);
  check(typeof token === "string" && token.length > 0, "login answered no token");
  // The page took the token: "Authorize" shows it is in use.
  await page.locator(".auth-wrapper .authorize.locked").waitFor();

  const user = await execute(
    "/api/user/{user_id}",
    async (block) => block.locator('tr[data-param-name="user_id"] input').fill(userId),
    `/api/user/${userId}`,
  );
  check(
    user.request.headers()["authorization"] === `Bearer ${token}`,
    `the page did not send the token: ${JSON.stringify(user.request.headers())}`,
  );
  check(
    user.json.code === 0 && user.json.data.user.username === username,
    `get user: ${JSON.stringify(user.json)}`,
  );
  const shown = operation("/api/user/{user_id}").locator(".live-responses-table .microlight").first();
  await shown.filter({ hasText: username }).waitFor();

  check(elsewhere.length === 0, `requests left for another host: ${elsewhere.join(", ")}`);
  check(problems.length === 0, `errors in the page: ${problems.join(" | ")}`);

  // The picture (README's): from the page's top to the user's answer, registration and log-in
  // closed again above it.
  for (const path of ["/api/user/register", "/api/user/login"]) {
    await operation(path).locator(".opblock-summary-control").click();
    await operation(path).locator("button.execute").waitFor({ state: "detached" });
  }
  mkdirSync(artifacts, { recursive: true });
  const screenshot = join(artifacts, "docs.png");
  await page.evaluate(() => {
    document.activeElement.blur();
    window.scrollTo(0, 0);
  });
  const answer = await operation("/api/user/{user_id}").locator(".live-responses-table")
    .first().boundingBox();
  check(answer, "the user's answer is not on the page");
  const height = Math.ceil(answer.y + answer.height + 16);
  await page.screenshot({ path: screenshot, fullPage: true, clip: { x: 0, y: 0, width: 1280, height } });
  console.log(`screenshot: ${screenshot}`);
});

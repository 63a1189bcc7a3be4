// Web Push in the browser: the server's real push (to a mock push service that decrypts it with
// Node's own crypto) delivered to the service worker through CDP `ServiceWorker.deliverPushMessage`;
// the notification shown with Allow / Deny; the action handler answering through the act endpoint
// with the token; a tap opening the terminal; Settings listing and revoking devices.
// `PushManager.subscribe` does not work in Playwright's off-the-record context, so devices are
// registered through the API with keys this test makes, as a browser would post them.
import { createServer, type Server as HttpServer } from 'node:http';
import { createECDH, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { Page, Worker } from '@playwright/test';
import { join } from 'node:path';
import { test as base, expect, signIn, expectTerminal } from '../fixtures';
import { ROOT } from '../server';

const test = base.extend({});
test.use({
  serverOptions: [{ extraToml: ['[push]', 'subject = "mailto:ops@example.org"', 'allowed_hosts = ["127.0.0.1"]',
    // The fake agent, with Claude Code's dialog rules: its `dialog` command draws one.
    '[profiles.asks]', 'name = "Asking agent"', `command = "${join(ROOT, 'tests/fixtures/fake-agent.sh')}"`, 'memory_mb = 10',
    '[profiles.asks.approval]'].join('\n') }, { scope: 'worker' }],
});

type Payload = { kind: string; tag: string; title: string; body: string; url: string; instance: string | null; token: string | null; question: { approval?: string | null; text: string; choices: { id: string; label: string }[] } | null };

/** A push service that plays the browser: it holds the subscription's keys and decrypts (RFC 8291). */
class MockPushService {
  readonly ecdh = createECDH('prime256v1');
  readonly auth = randomBytes(16);
  readonly received: Payload[] = [];
  private http: HttpServer;
  constructor() {
    this.ecdh.generateKeys();
    this.http = createServer((request, response) => {
      const chunks: Buffer[] = [];
      request.on('data', (c: Buffer) => chunks.push(c));
      request.on('end', () => {
        try {
          this.received.push(JSON.parse(this.decrypt(Buffer.concat(chunks)).toString('utf8')) as Payload);
          response.writeHead(201).end();
        } catch {
          response.writeHead(400).end();
        }
      });
    });
  }
  async listen(): Promise<void> {
    await new Promise<void>((ok) => this.http.listen(0, '127.0.0.1', ok));
  }
  close(): void {
    this.http.close();
  }
  subscription(): unknown {
    const { port } = this.http.address() as AddressInfo;
    const b64 = (b: Buffer) => b.toString('base64url');
    return { endpoint: `http://127.0.0.1:${port}/push/e2e`, expirationTime: null, keys: { p256dh: b64(this.ecdh.getPublicKey()), auth: b64(this.auth) } };
  }
  private decrypt(body: Buffer): Buffer {
    const salt = body.subarray(0, 16);
    const idlen = body[20]!;
    const serverKey = body.subarray(21, 21 + idlen);
    const ciphertext = body.subarray(21 + idlen);
    const shared = this.ecdh.computeSecret(serverKey);
    const info = Buffer.concat([Buffer.from('WebPush: info\0'), this.ecdh.getPublicKey(), serverKey]);
    const ikm = Buffer.from(hkdfSync('sha256', shared, this.auth, info, 32));
    const cek = Buffer.from(hkdfSync('sha256', ikm, salt, Buffer.from('Content-Encoding: aes128gcm\0'), 16));
    const nonce = Buffer.from(hkdfSync('sha256', ikm, salt, Buffer.from('Content-Encoding: nonce\0'), 12));
    const decipher = createDecipheriv('aes-128-gcm', cek, nonce);
    decipher.setAuthTag(ciphertext.subarray(ciphertext.length - 16));
    const padded = Buffer.concat([decipher.update(ciphertext.subarray(0, ciphertext.length - 16)), decipher.final()]);
    // The last record ends with the delimiter 2, then zero padding.
    let end = padded.length - 1;
    while (end >= 0 && padded[end] === 0) end--;
    return padded.subarray(0, end);
  }
}

/** The service worker's global scope, as far as these tests use it. */
type Scope = { registration: ServiceWorkerRegistration; handleNotificationClick: (action: string, n: Notification) => Promise<void> };

/** A same-origin API call from the page, as the app makes it. */
async function call(page: Page, method: string, path: string, body?: unknown): Promise<{ status: number; json: any }> {
  return page.evaluate(async ({ method, path, body }) => {
    const response = await fetch(path, { method, headers: { 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await response.text();
    return { status: response.status, json: text ? JSON.parse(text) : null };
  }, { method, path, body });
}

/**
 * Delivers `payload` to the page's service worker as a push, and returns the worker once its
 * notification is shown. Chromium drops a notification whose display a concurrent
 * `getNotifications` overtakes, so nothing reads them before `showNotification` has resolved.
 */
async function deliver(page: Page, origin: string, payload: Payload): Promise<Worker> {
  const context = page.context();
  const worker = context.serviceWorkers().find((w) => w.url().startsWith(origin)) ?? (await context.waitForEvent('serviceworker'));
  await worker.evaluate(() => {
    const scope = self as unknown as Scope & { shownTags?: string[] };
    if (scope.shownTags) return;
    scope.shownTags = [];
    const show = scope.registration.showNotification.bind(scope.registration);
    scope.registration.showNotification = async (title, options) => {
      await show(title, options);
      scope.shownTags!.push(options?.tag ?? '');
    };
  });
  const cdp = await context.newCDPSession(page);
  const registered = new Promise<string>((ok) => {
    cdp.on('ServiceWorker.workerRegistrationUpdated', ({ registrations }) => {
      const mine = registrations.find((r) => r.scopeURL.startsWith(origin) && !r.isDeleted);
      if (mine) ok(mine.registrationId);
    });
  });
  await cdp.send('ServiceWorker.enable');
  const registrationId = await registered;
  await cdp.send('ServiceWorker.deliverPushMessage', { origin, registrationId, data: JSON.stringify(payload) });
  await expect.poll(() => worker.evaluate((tag) => (self as unknown as { shownTags: string[] }).shownTags.includes(tag), payload.tag),
    { message: 'the push shows its notification' }).toBe(true);
  return worker;
}

test('a permission push shows Allow and Deny, answers with its token, and a tap opens the terminal', async ({ page, context, server }) => {
  const origin = new URL(server.url).origin;
  await context.grantPermissions(['notifications'], { origin });
  const push = new MockPushService();
  await push.listen();
  try {
    await signIn(page, server);
    await page.evaluate(async () => navigator.serviceWorker.ready);
    const subscribed = await call(page, 'POST', 'api/push/subscriptions', { subscription: push.subscription(), device: 'E2E phone' });
    expect(subscribed.status).toBe(201);

    const instance = await call(page, 'POST', 'api/instances', { profile: 'fake' });
    const id = instance.json.id as string;
    await page.goto(`${server.url}/#/t/${id}`);
    await expectTerminal(page, 'agent> ');
    await call(page, 'POST', `api/instances/${id}/command`, { text: 'ask' });
    await expect.poll(() => push.received.find((p) => p.kind === 'permission'), { timeout: 30_000 }).toBeTruthy();
    const payload = push.received.find((p) => p.kind === 'permission')!;
    expect(payload.instance).toBe(id);
    expect(payload.question?.text).toBe('Overwrite notes.txt? [y/N]');

    // The server's own payload, delivered to the service worker.
    await page.goto(`${server.url}/#/`);
    const worker = await deliver(page, origin, payload);
    const notification = () => worker.evaluate(async (tag) => {
      const [n] = await (self as unknown as Scope).registration.getNotifications({ tag });
      return n ? { title: n.title, body: n.body, actions: (n as Notification & { actions: { action: string }[] }).actions.map((a) => a.action), token: (n.data as Payload).token } : null;
    }, payload.tag);
    await expect.poll(notification).not.toBeNull();
    const shown = (await notification())!;
    expect(shown.title).toMatch(/needs permission$/);
    expect(shown.body).toBe('Overwrite notes.txt? [y/N]');
    expect(shown.actions).toEqual(['allow', 'deny']);
    expect(shown.token).toBe(payload.token);

    // Allow: the worker posts the token to the act endpoint (a [y/N] prompt is no dialog pocketdev reads: it says so).
    const answered = await worker.evaluate(async (tag) => {
      const scope = self as unknown as Scope;
      const [n] = await scope.registration.getNotifications({ tag });
      await scope.handleNotificationClick('allow', n!);
      const [after] = await scope.registration.getNotifications({ tag });
      return after?.body ?? '';
    }, payload.tag);
    expect(answered).toMatch(/cannot be answered from a notification/);
    // The token was spent by that call.
    const again = await call(page, 'POST', 'api/push/act', { instance: id, token: payload.token, choice: 'allow' });
    expect(again.status).toBe(409);

    // A tap on the body opens the instance's terminal (through the link left for the page).
    await worker.evaluate(async (tag) => {
      const scope = self as unknown as Scope;
      const [n] = await scope.registration.getNotifications({ tag });
      await scope.handleNotificationClick('', n!);
    }, payload.tag);
    await expect(page).toHaveURL(new RegExp(`#/t/${id}$`));
    await expectTerminal(page, 'agent> ');
  } finally {
    push.close();
  }
});

test("a notification's Allow answers the agent's dialog, from the service worker, with no page open on it", async ({ page, context, server }) => {
  const origin = new URL(server.url).origin;
  await context.grantPermissions(['notifications'], { origin });
  const push = new MockPushService();
  await push.listen();
  try {
    await signIn(page, server);
    await page.evaluate(async () => navigator.serviceWorker.ready);
    expect((await call(page, 'POST', 'api/push/subscriptions', { subscription: push.subscription(), device: 'E2E phone' })).status).toBe(201);
    const instance = await call(page, 'POST', 'api/instances', { profile: 'asks' });
    const id = instance.json.id as string;
    await expect.poll(async () => (await call(page, 'GET', `api/instances/${id}/output`)).json?.output ?? '').toContain('agent>');
    await call(page, 'POST', `api/instances/${id}/command`, { text: 'dialog' });

    // The push carries the dialog pocketdev read, with its approval id and choices.
    await expect.poll(() => push.received.find((p) => p.kind === 'permission' && p.question?.approval), { timeout: 30_000 }).toBeTruthy();
    const payload = push.received.find((p) => p.kind === 'permission' && p.question?.approval)!;
    expect(payload.question!.choices.map((c) => c.label).slice(0, 2)).toEqual(['Allow', 'Deny']);
    await page.goto(`${server.url}/#/`);
    const worker = await deliver(page, origin, payload);
    await expect.poll(() => worker.evaluate(async (tag) => (await (self as unknown as Scope).registration.getNotifications({ tag })).length, payload.tag)).toBe(1);

    // Allow, as from the lock screen: the notification's first action (titled Allow) carries
    // the dialog's choice; the worker answers with the token, and the agent goes on.
    const tapped = await worker.evaluate(async (tag) => {
      const scope = self as unknown as Scope;
      const [n] = await scope.registration.getNotifications({ tag });
      const [allow] = (n as Notification & { actions: { action: string; title: string }[] }).actions;
      await scope.handleNotificationClick(allow!.action, n!);
      return allow!.title;
    }, payload.tag);
    expect(tapped).toBe('Allow');
    await expect.poll(async () => (await call(page, 'GET', `api/instances/${id}/output`)).json?.output ?? '', { timeout: 15_000 }).toContain('chose 1 for rm -rf build');
    const after = await call(page, 'GET', `api/instances/${id}`);
    expect(after.json.pending_approval).toBeNull();
    // Answered, so no notification is left to say otherwise.
    expect(await worker.evaluate(async (tag) => (await (self as unknown as Scope).registration.getNotifications({ tag })).length, payload.tag)).toBe(0);
  } finally {
    push.close();
  }
});

test('Settings lists this account\'s devices and revokes one', async ({ page, server }, info) => {
  const push = new MockPushService();
  await push.listen();
  try {
    await signIn(page, server);
    const subscribed = await call(page, 'POST', 'api/push/subscriptions', { subscription: push.subscription(), device: 'Kitchen tablet' });
    expect(subscribed.status).toBe(201);
    await page.goto(`${server.url}/#/settings`);
    const panel = page.getByRole('region', { name: 'Notifications' });
    await expect(panel.getByText('Kitchen tablet')).toBeVisible();
    if (info.project.name === 'phone') {
      // The phone profile is an iPhone: it is told about the Home Screen and the missing buttons.
      await expect(panel.locator('#push-ios')).toContainText('Home Screen');
    }
    await panel.getByRole('button', { name: 'Revoke Kitchen tablet' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Revoke' }).click();
    // (Other tests of this server may have left devices of their own.)
    await expect(panel.getByText('Kitchen tablet')).toHaveCount(0);
    const left = await call(page, 'GET', 'api/push/subscriptions');
    expect(left.json.map((d: { device: string }) => d.device)).not.toContain('Kitchen tablet');
  } finally {
    push.close();
  }
});

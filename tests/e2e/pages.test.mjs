// Browser tests of the pages (issue 5), in Debian's chromium driven by
// playwright-core, against the running test stack (scripts/stack.sh test).
// Each test uses its own users (user701..) and its own browser context.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import {
  BASE_URL, axeScan, bigFile, launchBrowser, login, newContext, newPage, pngImage, screenshots,
} from './lib.mjs';

const MIB = 1024 * 1024;
let browser;

before(async () => {
  // A clear message instead of 20 failures when the stack is not up.
  const res = await fetch(`${BASE_URL}/`).catch((err) => {
    throw new Error(`the web server is not reachable at ${BASE_URL} (${err.message}); ` +
      'start it with scripts/stack.sh --config etc/test.ini test-up or set PROFILE_WEB_URL');
  });
  assert.equal(res.status, 200);
  browser = await launchBrowser();
});

after(async () => {
  if (browser) await browser.close();
});

// Runs fn(page, ctx) in a fresh context and checks that no script error or
// CSP violation happened meanwhile.
async function withPage(fn, options) {
  const ctx = await newContext(browser, options);
  try {
    const page = await newPage(ctx);
    await fn(page, ctx);
    assert.deepEqual(ctx.problems, [], 'script errors or CSP violations in the browser');
  } finally {
    await ctx.close();
  }
}

async function save(page) {
  await Promise.all([page.waitForLoadState('load'), page.waitForEvent('framenavigated'),
    page.getByRole('button', { name: 'Save' }).click()]);
}

async function openEdit(page) {
  await Promise.all([page.waitForURL(/\/edit$/), page.getByRole('link', { name: 'Edit profile' }).click()]);
}

describe('login', () => {
  test('a wrong password shows the error on the login page', () => withPage(async (page) => {
    await page.goto('/');
    await page.getByLabel('Username').fill('user701');
    await page.getByLabel('Password').fill('not-the-password');
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.waitForLoadState('load');
    assert.equal(new URL(page.url()).pathname, '/login');
    assert.match(await page.getByRole('alert').innerText(), /wrong username or password/i);
    assert.equal(await page.getByLabel('Username').inputValue(), 'user701');
    assert.equal(await page.getByLabel('Password').inputValue(), '');
  }));

  test('the right password shows the profile', () => withPage(async (page) => {
    await login(page, 'user701');
    assert.equal(await page.getByRole('heading', { level: 1 }).innerText(), 'Your profile');
    assert.match(await page.locator('dl').innerText(), /user701/);
  }));

  test('the whole login works with the keyboard only, with visible focus', () => withPage(async (page) => {
    await page.goto('/');
    const focused = () => page.evaluate(() => {
      const el = document.activeElement;
      const style = getComputedStyle(el);
      return { id: el.id, tag: el.tagName, text: el.textContent.trim(),
        outline: style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) > 0 };
    });
    // autofocus puts the caret in the username field (chromium applies it a
    // moment after the load event: wait for it, up to 5 s, rather than race it).
    await page.waitForFunction(() => document.activeElement && document.activeElement.id === 'username',
      null, { timeout: 5000 }).catch(() => {});
    assert.equal((await focused()).id, 'username');
    await page.keyboard.type('user707');
    await page.keyboard.press('Tab');
    assert.equal((await focused()).id, 'password');
    assert.ok((await focused()).outline, 'the focused password field shows no focus outline');
    await page.keyboard.type('password123');
    await page.keyboard.press('Tab');
    const button = await focused();
    assert.equal(button.tag, 'BUTTON');
    assert.equal(button.text, 'Log in');
    assert.ok(button.outline, 'the focused button shows no focus outline');
    await Promise.all([page.waitForURL(/\/profile$/), page.keyboard.press('Enter')]);
    // On to the edit page and back, still by keyboard.
    let hops = 0;
    while ((await focused()).text !== 'Edit profile' && hops++ < 10) await page.keyboard.press('Tab');
    assert.ok((await focused()).outline, 'the focused link shows no focus outline');
    await Promise.all([page.waitForURL(/\/edit$/), page.keyboard.press('Enter')]);
    assert.equal(await page.getByRole('heading', { level: 1 }).innerText(), 'Edit profile');
  }));
});

describe('edit', () => {
  test("the nickname 'Zoë 🚀 李' is saved and shown", () => withPage(async (page) => {
    await login(page, 'user702');
    await openEdit(page);
    await page.getByLabel('Nickname').fill('Zoë 🚀 李');
    await Promise.all([page.waitForURL(/\/profile$/), page.getByRole('button', { name: 'Save' }).click()]);
    assert.equal(await page.locator('.nickname').innerText(), 'Zoë 🚀 李');
    await openEdit(page);
    assert.equal(await page.getByLabel('Nickname').inputValue(), 'Zoë 🚀 李');
  }));

  test('a PNG shows a preview, is uploaded and is rendered', () => withPage(async (page) => {
    await login(page, 'user703');
    const before = await page.locator('img.avatar').getAttribute('src');
    await openEdit(page);
    // A size of its own each run, so the stored picture (named by content) is new.
    const pngWidth = 120 + Math.floor(Math.random() * 100);
    await page.getByLabel('New picture').setInputFiles({ name: 'photo.png', mimeType: 'image/png', buffer: pngImage(pngWidth, 120) });
    const preview = page.locator('#picture-preview');
    await page.waitForFunction(() => {
      const img = document.getElementById('picture-preview');
      return img.src.startsWith('blob:') && img.complete && img.naturalWidth > 0;
    });
    assert.match(await page.locator('#picture-caption').innerText(), /new picture/i);
    assert.equal(await preview.getAttribute('alt'), 'Preview of the new picture');
    await Promise.all([page.waitForURL(/\/profile$/), page.getByRole('button', { name: 'Save' }).click()]);
    const img = page.locator('img.avatar');
    const src = await img.getAttribute('src');
    assert.match(src, /^\/pictures\/[0-9a-f]+\.jpg$/);
    assert.notEqual(src, before);
    await page.waitForFunction(() => document.querySelector('img.avatar').complete);
    const width = await img.evaluate((el) => el.naturalWidth);
    assert.ok(width > 0, `the uploaded picture did not render (naturalWidth ${width})`);
    // The edit page shows the same picture as the current one.
    await openEdit(page);
    assert.equal(await page.locator('#picture-preview').getAttribute('src'), src);
  }));

  test('an 11 MiB file is refused before upload with the error shown', () => withPage(async (page) => {
    await login(page, 'user704');
    const nickname = await page.locator('.nickname').innerText();
    await openEdit(page);
    let bigUploads = 0;
    page.on('request', (req) => { if (req.method() === 'POST' && (req.postDataBuffer()?.length || 0) > MIB) bigUploads++; });
    const input = page.getByLabel('New picture');
    await input.setInputFiles(bigFile(11 * MIB));
    const error = page.locator('#picture-error');
    await error.waitFor({ state: 'visible' });
    assert.match(await error.innerText(), /larger than 10 MiB/);
    assert.equal(await input.evaluate((el) => el.files.length), 0, 'the too-large file is still selected');
    assert.equal(await input.getAttribute('aria-invalid'), 'true');
    // Saving now keeps everything and uploads nothing big.
    await Promise.all([page.waitForURL(/\/profile$/), page.getByRole('button', { name: 'Save' }).click()]);
    assert.equal(bigUploads, 0);
    assert.equal(await page.locator('.nickname').innerText(), nickname);
  }));

  test('with JavaScript off an 11 MiB file gets the server error on the edit page', () => withPage(async (page) => {
    await login(page, 'user704');
    await openEdit(page);
    await page.getByLabel('New picture').setInputFiles(bigFile(11 * MIB));
    await save(page);
    assert.equal(new URL(page.url()).pathname, '/edit');
    assert.match(await page.getByRole('alert').first().innerText(), /larger than 10 MiB/);
    assert.ok(await page.getByLabel('Nickname').inputValue(), 'the nickname field is empty after the error');
  }, { javaScriptEnabled: false }));

  test('a file that is not an image is refused with a clear error', () => withPage(async (page) => {
    await login(page, 'user709');
    await openEdit(page);
    await page.getByLabel('New picture').setInputFiles({ name: 'notes.png', mimeType: 'image/png', buffer: Buffer.from('just some text\n') });
    const error = page.locator('#picture-error');
    await error.waitFor({ state: 'visible' });
    assert.match(await error.innerText(), /not a JPEG, PNG, GIF or WebP image/);
  }));

  test('with JavaScript off a file that is not an image gets the server error', () => withPage(async (page) => {
    await login(page, 'user709');
    await openEdit(page);
    await page.getByLabel('New picture').setInputFiles({ name: 'notes.png', mimeType: 'image/png', buffer: Buffer.from('just some text\n') });
    await save(page);
    assert.match(await page.getByRole('alert').first().innerText(), /not a JPEG, PNG, GIF or WebP image/);
  }, { javaScriptEnabled: false }));

  test('a too long or blank nickname shows the error next to the form', () => withPage(async (page) => {
    await login(page, 'user709');
    await openEdit(page);
    const long = 'é'.repeat(65);
    await page.getByLabel('Nickname').fill(long);
    await save(page);
    assert.match(await page.getByRole('alert').first().innerText(), /at most 64 characters/);
    assert.equal(await page.getByLabel('Nickname').inputValue(), long, 'the typed nickname was lost');
    // 64 emoji are 64 characters (128 UTF-16 units): accepted.
    const emoji = '🚀'.repeat(64);
    await page.getByLabel('Nickname').fill(emoji);
    assert.equal(await page.getByLabel('Nickname').inputValue(), emoji, 'the field cut the nickname short');
    await Promise.all([page.waitForURL(/\/profile$/), page.getByRole('button', { name: 'Save' }).click()]);
    assert.equal(await page.locator('.nickname').innerText(), emoji);
    await openEdit(page);
    await page.getByLabel('Nickname').fill('   ');
    await save(page);
    assert.match(await page.getByRole('alert').first().innerText(), /must not be empty/);
  }));

  test('a nickname with HTML shows as text and runs nothing', () => withPage(async (page) => {
    const nickname = '<img src=x onerror=alert(1)>';
    let dialogs = 0;
    page.on('dialog', async (d) => { dialogs++; await d.dismiss(); });
    await login(page, 'user705');
    await openEdit(page);
    await page.getByLabel('Nickname').fill(nickname);
    await Promise.all([page.waitForURL(/\/profile$/), page.getByRole('button', { name: 'Save' }).click()]);
    assert.equal(await page.locator('.nickname').innerText(), nickname);
    assert.equal(await page.locator('img[src="x"]').count(), 0);
    await page.reload();
    await openEdit(page);
    assert.equal(await page.getByLabel('Nickname').inputValue(), nickname);
    assert.equal(await page.locator('img[src="x"]').count(), 0);
    await page.waitForTimeout(300);
    assert.equal(dialogs, 0, 'a dialog opened');
  }));
});

describe('session', () => {
  test('after logging out the back button lands on the login page', () => withPage(async (page) => {
    await login(page, 'user706');
    await Promise.all([page.waitForURL((u) => u.pathname === '/'), page.getByRole('button', { name: 'Log out' }).click()]);
    assert.equal(await page.getByRole('heading', { level: 1 }).innerText(), 'Log in');
    await page.goBack();
    await page.waitForLoadState('load');
    assert.equal(new URL(page.url()).pathname, '/', `back went to ${page.url()}`);
    assert.equal(await page.getByRole('heading', { level: 1 }).innerText(), 'Log in');
    assert.equal(await page.locator('text=user706').count(), 0, 'the profile is still visible');
  }));

  test('an expired session sends the user to the login page saying log in again', () => withPage(async (page, ctx) => {
    await login(page, 'user708');
    // End the session behind the browser's back (as expiry would).
    const session = (await ctx.cookies()).find((c) => c.name === 'session');
    const res = await fetch(`${BASE_URL}/api/v1/logout`, { method: 'POST', headers: { Cookie: `session=${session.value}` } });
    assert.equal(res.status, 204);
    await Promise.all([page.waitForURL((u) => u.pathname === '/'), page.getByRole('link', { name: 'Edit profile' }).click()]);
    assert.match(await page.getByRole('status').innerText(), /expired\. Please log in again/);
    await login(page, 'user708');
  }));

  test('a form posted from another origin is refused with 403', () => withPage(async (page) => {
    await login(page, 'user710');
    const before = await page.locator('.nickname').innerText();
    // Another origin on the same host: same *site*, so SameSite=Lax still
    // sends the session cookie; only the CSRF token and Origin check stop it.
    const evil = http.createServer((req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/html' });
      res.end(`<!DOCTYPE html><form id="f" method="post" action="${BASE_URL}/edit" enctype="multipart/form-data">
        <input name="nickname" value="pwned"></form><button form="f">go</button>`);
    });
    await new Promise((resolve) => evil.listen(0, '127.0.0.1', resolve));
    try {
      await page.goto(`http://127.0.0.1:${evil.address().port}/`);
      const [response] = await Promise.all([page.waitForResponse((r) => r.url().endsWith('/edit')),
        page.getByRole('button', { name: 'go' }).click()]);
      assert.equal(response.status(), 403);
    } finally {
      evil.close();
    }
    await page.goto('/profile');
    assert.equal(await page.locator('.nickname').innerText(), before);
  }));
});

describe('every page', () => {
  const pages = [];
  test('screenshots at phone and desktop widths, and axe finds no serious or critical violation', () => withPage(async (page) => {
    const visit = async (name) => {
      await page.waitForLoadState('load');
      await screenshots(page, name);
      const violations = await axeScan(page, name);
      pages.push({ name, violations });
    };
    await page.goto('/');
    await visit('login');
    await page.getByLabel('Username').fill('user711');
    await page.getByLabel('Password').fill('wrong');
    await page.getByRole('button', { name: 'Log in' }).click();
    await visit('login-error');
    await page.goto('/?session=expired');
    await visit('login-expired');
    await login(page, 'user711');
    await openEdit(page);
    await page.getByLabel('Nickname').fill('Zoë 🚀 李');
    await page.getByLabel('New picture').setInputFiles({ name: 'photo.png', mimeType: 'image/png', buffer: pngImage(160, 160) });
    await Promise.all([page.waitForURL(/\/profile$/), page.getByRole('button', { name: 'Save' }).click()]);
    await page.waitForFunction(() => document.querySelector('img.avatar').complete);
    await visit('profile');
    await openEdit(page);
    await visit('edit');
    await page.getByLabel('New picture').setInputFiles(bigFile(11 * MIB));
    await page.locator('#picture-error').waitFor({ state: 'visible' });
    await visit('edit-error');
    await page.goto('/no-such-page');
    await visit('not-found');
    for (const p of pages) console.log(`axe ${p.name}: ${p.violations.length ? JSON.stringify(p.violations) : 'no violations'}`);
    const bad = pages.flatMap((p) => p.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical')
      .map((v) => `${p.name}: ${v.id} (${v.impact}) ${v.help}`));
    assert.deepEqual(bad, []);
  }));
});

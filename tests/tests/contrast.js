// WCAG 2 contrast of rendered text, from computed styles (used by
// browser.rs through WebDriver's execute/sync: `arguments[0]` is a CSS
// selector, `arguments[1]` the minimum ratio).
//
// For every visible element matching the selector that has its own text
// (a non-blank text node child), the text colour and the colour behind it
// are composited the way the browser paints flat colours: from the root
// down, each ancestor's background-color over what lies behind it, each
// `opacity` blending its whole subtree with what lies behind it, the text
// colour (with its alpha) over the element's background. Background images
// (gradients) are not painted text backgrounds here: an element whose own
// or ancestor's background-image is not `none` is reported with `image:
// true` so the caller can decide. Returns every element below the minimum
// as {text, ratio, fg, bg, path}, and how many were checked.
const [selector, minimum] = arguments;

function parse(c) {
  const m = /rgba?\(([^)]+)\)/.exec(c);
  if (!m) return [0, 0, 0, 0];
  const p = m[1].split(/[,\s/]+/).filter(Boolean).map(Number);
  return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
}
// `top` (with alpha) over the opaque `under`.
const over = (top, under) => [0, 1, 2].map(i => top[i] * top[3] + under[i] * (1 - top[3])).concat(1);
const mix = (a, b, t) => [0, 1, 2].map(i => a[i] * t + b[i] * (1 - t)).concat(1);
function luminance(c) {
  const [r, g, b] = c.slice(0, 3).map(v => {
    v /= 255;
    return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
  });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}
function ratio(a, b) {
  const [x, y] = [luminance(a), luminance(b)].sort((p, q) => q - p);
  return (x + 0.05) / (y + 0.05);
}
function visible(e) {
  if (!e.getClientRects().length) return false;
  for (let n = e; n; n = n.parentElement) {
    const s = getComputedStyle(n);
    if (s.visibility === 'hidden' || s.display === 'none') return false;
  }
  return true;
}
const ownText = e => [...e.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
function path(e) {
  const parts = [];
  for (let n = e; n && n !== document.body && parts.length < 4; n = n.parentElement) {
    parts.unshift(n.tagName.toLowerCase() + (n.id ? '#' + n.id : '') + (n.classList.length ? '.' + [...n.classList].join('.') : ''));
  }
  return parts.join(' > ');
}

// [text pixel, background pixel] of `e`, painted from the root down.
function pixels(e) {
  const chain = [];
  for (let n = e; n; n = n.parentElement) chain.unshift(n);
  let image = false;
  // paint(i, behind) → [fg, bg] for the subtree of chain[i] over `behind`.
  function paint(i, behind) {
    const s = getComputedStyle(chain[i]);
    if (s.backgroundImage !== 'none') image = true;
    const inner = over(parse(s.backgroundColor), behind);
    let fg, bg;
    if (i === chain.length - 1) {
      bg = inner;
      fg = over(parse(s.color), inner);
    } else {
      [fg, bg] = paint(i + 1, inner);
    }
    const o = Number(s.opacity);
    return o < 1 ? [mix(fg, behind, o), mix(bg, behind, o)] : [fg, bg];
  }
  const [fg, bg] = paint(0, [255, 255, 255, 1]);
  return { fg, bg, image };
}

const failures = [];
let checked = 0;
for (const e of document.querySelectorAll(selector)) {
  if (!ownText(e) || !visible(e)) continue;
  // Disabled controls are exempt (WCAG 1.4.3: inactive user interface components).
  if (e.closest('button:disabled, input:disabled, select:disabled')) continue;
  checked++;
  const { fg, bg, image } = pixels(e);
  const r = ratio(fg, bg);
  if (r < minimum) {
    failures.push({
      text: e.textContent.trim().slice(0, 60), ratio: Math.round(r * 100) / 100,
      fg: fg.slice(0, 3).map(Math.round), bg: bg.slice(0, 3).map(Math.round), image, path: path(e),
    });
  }
}
return { checked, failures };

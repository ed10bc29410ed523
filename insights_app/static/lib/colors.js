// The colours of attribution maps, from the server's colormaps (/config visualization.colormaps):
// the page's legends and its token and bar colours use exactly the stops the server draws with.

/** The colour stops of a palette and sign (an array of "#rrggbb"). */
export function stops(config, palette, sign) {
  const maps = (config.visualization && config.visualization.colormaps) || {};
  const byPalette = maps[palette] || maps[Object.keys(maps)[0]] || {};
  return byPalette[sign] || byPalette.all || ["#ffffff", "#000000"];
}

/** A CSS gradient through the stops, left to right. */
export function gradient(colors) {
  return `linear-gradient(90deg, ${colors.join(", ")})`;
}

function rgb(hex) {
  const v = parseInt(hex.slice(1), 16);
  return [(v >> 16) & 255, (v >> 8) & 255, v & 255];
}

/** The colour at position t in [0, 1] along the stops, as "rgb(r, g, b)". */
export function colorAt(colors, t) {
  const x = Math.max(0, Math.min(1, Number.isFinite(t) ? t : 0)) * (colors.length - 1);
  const i = Math.min(colors.length - 2, Math.floor(x));
  const a = rgb(colors[i]);
  const b = rgb(colors[i + 1]);
  const f = x - i;
  return `rgb(${a.map((c, k) => Math.round(c + (b[k] - c) * f)).join(", ")})`;
}

/** The colour of a signed value on the diverging map, scaled so that ±scale is the full colour. */
export function signedColor(config, palette, value, scale) {
  const s = scale > 0 ? value / scale : 0;
  return colorAt(stops(config, palette, "all"), (s + 1) / 2);
}

// ---------------------------------------------------------------- readable text on a colour

/** The text colour the page uses on light backgrounds (its --ia-text in the light theme). */
export const DARK_TEXT = [29, 39, 51];
const WHITE = [255, 255, 255];

/** [r, g, b] of "#rrggbb" or "rgb(r, g, b)" (or an [r, g, b] array, returned as is). */
export function rgbOf(color) {
  if (Array.isArray(color)) return color;
  const s = String(color).trim();
  if (s.startsWith("#")) return rgb(s);
  const m = s.match(/rgba?\(([^)]*)\)/);
  return m ? m[1].split(",").slice(0, 3).map((v) => Number(v.trim())) : [255, 255, 255];
}

/** WCAG relative luminance of [r, g, b]. */
export function luminance(color) {
  const [r, g, b] = color.map((v) => { const c = v / 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}

/** WCAG contrast ratio of two [r, g, b] colours (1 to 21). */
export function contrastRatio(a, b) {
  const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x);
  return (hi + 0.05) / (lo + 0.05);
}

/**
 * Colours for text on a data colour, readable at WCAG AA (4.5:1): `dark` text on light shades, white on
 * dark ones. A mid shade where neither reads is moved toward `toward` (0: darker, 255: lighter) until one
 * does; with pure black as `dark` no shade needs moving (white or black always reaches 4.5:1).
 * Returns {background, color} as CSS colours.
 */
export function readableOn(background, { dark = DARK_TEXT, toward = 0 } = {}) {
  let bg = rgbOf(background);
  for (let i = 0; i < 20 && contrastRatio(bg, WHITE) < 4.5 && contrastRatio(bg, dark) < 4.5; i++) {
    bg = bg.map((c) => Math.round(c + (toward - c) * 0.12));
  }
  const fg = contrastRatio(bg, WHITE) >= contrastRatio(bg, dark) ? WHITE : dark;
  return { background: `rgb(${bg.join(", ")})`, color: `rgb(${fg.join(", ")})` };
}

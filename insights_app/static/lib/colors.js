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

/* lib/replay picture: one self-contained SVG with the TTFT distribution of every mode (CDF on a
 * log time axis, p50/p99 marked) and a bar chart of hit rates, written as plain text. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ic/err.h"
#include "ic/replay.h"

static const char *const COLORS[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd",
                                     "#ff7f0e", "#17becf", "#8c564b", "#e377c2"};
#define NCOLORS (sizeof(COLORS) / sizeof(COLORS[0]))

static int cmp_dbl(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static void xml_text(FILE *f, const char *s) {
  for (; *s; s++) {
    if (*s == '<')
      fputs("&lt;", f);
    else if (*s == '>')
      fputs("&gt;", f);
    else if (*s == '&')
      fputs("&amp;", f);
    else if (*s == '"')
      fputs("&quot;", f);
    else
      fputc(*s, f);
  }
}

int ic_replay_write_svg(FILE *f, const char *title, const ic_replay_summary_t *s,
                        const double *const *ttfts, const size_t *nttft, size_t n) {
  const double W = 1040, H = 460;
  const double cx0 = 70, cx1 = 620, cy0 = 60, cy1 = 380; /* CDF plot area */
  const double bx0 = 690, bx1 = 970;                     /* hit-rate bars */
  /* Log axis bounds from the data, widened to whole decades. */
  double lo = INFINITY, hi = 0;
  for (size_t i = 0; i < n; i++)
    for (size_t k = 0; k < nttft[i]; k++) {
      double v = ttfts[i][k];
      if (v > 0 && v < lo) lo = v;
      if (v > hi) hi = v;
    }
  if (!(lo < INFINITY) || hi <= 0) lo = 1, hi = 10;
  double d0 = floor(log10(lo)), d1 = ceil(log10(hi));
  if (d1 <= d0) d1 = d0 + 1;
  fprintf(f,
          "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
          "viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\" font-size=\"12\">\n"
          "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
          "<text x=\"%.0f\" y=\"24\" font-size=\"16\" font-weight=\"bold\">",
          W, H, W, H, cx0);
  xml_text(f, title ? title : "replay");
  fprintf(f,
          "</text>\n<text x=\"%.0f\" y=\"44\">Time to first token, cumulative share of "
          "requests (log scale, ms; dots: p50, squares: p99)</text>\n",
          cx0);
  fprintf(f, "<text x=\"%.0f\" y=\"44\">Prefix-cache hit rate</text>\n", bx0);
  /* CDF axes and grid. */
  fprintf(f,
          "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" "
          "stroke=\"#888\"/>\n",
          cx0, cy0, cx1 - cx0, cy1 - cy0);
  for (double d = d0; d <= d1; d++) {
    double x = cx0 + (d - d0) / (d1 - d0) * (cx1 - cx0);
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.0f\" x2=\"%.1f\" y2=\"%.0f\" stroke=\"#ddd\"/>\n", x, cy0,
            x, cy1);
    fprintf(f, "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\">%g</text>\n", x, cy1 + 16,
            pow(10, d));
  }
  for (int q = 0; q <= 4; q++) {
    double y = cy1 - q / 4.0 * (cy1 - cy0);
    fprintf(f, "<line x1=\"%.0f\" y1=\"%.1f\" x2=\"%.0f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", cx0, y,
            cx1, y);
    fprintf(f, "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">%d%%</text>\n", cx0 - 6, y + 4,
            q * 25);
  }
  for (size_t i = 0; i < n; i++) {
    const char *col = COLORS[i % NCOLORS];
    size_t m = nttft[i];
    double *v = malloc((m ? m : 1) * sizeof(double));
    if (!v) return IC_ENOMEM;
    memcpy(v, ttfts[i], m * sizeof(double));
    qsort(v, m, sizeof(double), cmp_dbl);
    /* At most ~400 points per curve: a step every m/400 requests. */
    size_t step = m > 400 ? m / 400 : 1;
    fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", col);
    for (size_t k = 0; k < m; k += step) {
      double t = v[k] > pow(10, d0) ? v[k] : pow(10, d0);
      double x = cx0 + (log10(t) - d0) / (d1 - d0) * (cx1 - cx0);
      double y = cy1 - (double)(k + 1) / (double)m * (cy1 - cy0);
      fprintf(f, "%.1f,%.1f ", x, y);
    }
    if (m) {
      double t = v[m - 1] > pow(10, d0) ? v[m - 1] : pow(10, d0);
      fprintf(f, "%.1f,%.1f", cx0 + (log10(t) - d0) / (d1 - d0) * (cx1 - cx0), cy0);
    }
    fprintf(f, "\"/>\n");
    double marks[2] = {s[i].ttft_p50_ms, s[i].ttft_p99_ms}, shares[2] = {0.5, 0.99};
    for (int k = 0; k < 2 && m; k++) {
      double t = marks[k] > pow(10, d0) ? marks[k] : pow(10, d0);
      double x = cx0 + (log10(t) - d0) / (d1 - d0) * (cx1 - cx0);
      double y = cy1 - shares[k] * (cy1 - cy0);
      if (k == 0)
        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"%s\"/>\n", x, y, col);
      else
        fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"7\" height=\"7\" fill=\"%s\"/>\n", x - 3.5,
                y - 3.5, col);
    }
    free(v);
    /* Legend under the plot. */
    double lx = cx0 + (double)(i % 3) * 185, ly = cy1 + 40 + (double)(i / 3) * 18;
    fprintf(f, "<rect x=\"%.0f\" y=\"%.0f\" width=\"12\" height=\"12\" fill=\"%s\"/>\n", lx,
            ly - 10, col);
    fprintf(f, "<text x=\"%.0f\" y=\"%.0f\">", lx + 16, ly);
    xml_text(f, s[i].mode);
    fprintf(f, ": mean %.0f, p99 %.0f ms</text>\n", s[i].ttft_mean_ms, s[i].ttft_p99_ms);
  }
  /* Hit-rate bars (0..100 %). */
  double bh = n ? (cy1 - cy0) / (double)n : 0;
  for (size_t i = 0; i < n; i++) {
    double y = cy0 + (double)i * bh + bh * 0.15, h = bh * 0.7;
    double w = (bx1 - bx0 - 90) * (s[i].hit_rate > 0 ? (s[i].hit_rate < 1 ? s[i].hit_rate : 1) : 0);
    fprintf(f, "<rect x=\"%.0f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"/>\n",
            bx0 + 90, y, w, h, COLORS[i % NCOLORS]);
    fprintf(f, "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">", bx0 + 84, y + h / 2 + 4);
    xml_text(f, s[i].mode);
    fprintf(f, "</text>\n<text x=\"%.1f\" y=\"%.1f\">%.1f%%</text>\n", bx0 + 94 + w, y + h / 2 + 4,
            100 * s[i].hit_rate);
  }
  fprintf(f, "</svg>\n");
  return ferror(f) ? IC_EIO : 0;
}

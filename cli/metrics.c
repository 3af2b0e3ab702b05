// cli/metrics.c: what `heed train` leaves for a person to look at: the
// metrics log (metrics.csv, one row per step, appended as training goes,
// cut back to the checkpoint's step on --resume) and the loss plot
// (loss.svg: train and validation loss against step, axes, ticks, labels,
// a legend), drawn by hand as SVG text so that nothing has to be installed.
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/train.h"
#include "runtime/rt.h"

#define METRICS_HEADER "step,loss,val_loss,lr,grad_norm,tokens_per_s,elapsed_s\n"

typedef struct {
  double *step, *loss, *vstep, *vloss;
  int n, nv, cap, capv;
} Series;

static bool push(double **a, double **b, int *n, int *cap, double x, double y) {
  if (*n == *cap) {
    int nc = *cap ? *cap * 2 : 256;
    double *na = heed_realloc(*a, sizeof **a * (size_t)nc);
    if (na) *a = na;
    double *nb = na ? heed_realloc(*b, sizeof **b * (size_t)nc) : NULL;
    if (nb) *b = nb;
    if (!na || !nb) return false;
    *cap = nc;
  }
  (*a)[*n] = x;
  (*b)[(*n)++] = y;
  return true;
}

static void series_free(Series *s) {
  heed_free(s->step), heed_free(s->loss), heed_free(s->vstep), heed_free(s->vloss);
  memset(s, 0, sizeof *s);
}

// Reads the step, loss and val_loss columns of a log; upto >= 0 also
// writes the rows with step <= upto, verbatim, to keep (if not NULL).
static bool read_log(FILE *f, Series *s, int64_t upto, FILE *keep) {
  char line[1024];
  bool ok = true;
  while (ok && fgets(line, sizeof line, f)) {
    char *end;
    double step = strtod(line, &end);
    if (end == line || *end != ',') continue;  // the header, a torn last line
    double loss = strtod(end + 1, &end);
    if (*end != ',') continue;
    if (upto >= 0 && step > (double)upto) continue;
    if (strchr(line, '\n') == NULL) continue;  // cut off by a crash
    ok = push(&s->step, &s->loss, &s->n, &s->cap, step, loss);
    char *v = end + 1;
    if (ok && *v != ',') {
      double vl = strtod(v, &end);
      if (*end == ',') ok = push(&s->vstep, &s->vloss, &s->nv, &s->capv, step, vl);
    }
    if (keep && fputs(line, keep) == EOF) ok = false;
  }
  return ok;
}

FILE *heed_metrics_open(const char *path, int64_t upto, char *err, size_t errlen) {
  FILE *old = upto >= 0 ? fopen(path, "r") : NULL;
  if (!old) {  // a new log
    FILE *f = fopen(path, "w");
    if (!f || fputs(METRICS_HEADER, f) == EOF) {
      snprintf(err, errlen, "cannot write '%s': %s", path, strerror(errno));
      if (f) fclose(f);
      return NULL;
    }
    return f;
  }
  RtOutFile o;  // the kept rows go to a temporary file that replaces the log when whole
  char why[4400];
  FILE *f = rt_out_open(&o, path, 0666, why, sizeof why) == RT_OK ? rt_out_stream(&o) : NULL;
  Series s = {0};
  bool ok = f && fputs(METRICS_HEADER, f) != EOF && read_log(old, &s, upto, f);
  fclose(old);
  series_free(&s);
  if (!ok) {
    if (o.path) snprintf(why, sizeof why, "%s", strerror(errno));
    rt_out_abort(&o);
  } else if (rt_out_commit(&o, why, sizeof why) != RT_OK) {
    ok = false;
  } else if (!(f = fopen(path, "a"))) {
    snprintf(why, sizeof why, "%s", strerror(errno));
    ok = false;
  }
  if (!ok) {
    snprintf(err, errlen, "cannot rewrite '%s': %s", path, why);
    return NULL;
  }
  return f;  // open at the end of the rewritten log
}

// A "nice" tick step (1, 2 or 5 times a power of ten) for about n ticks.
static double tick_step(double range, int n) {
  double raw = range / n, p = pow(10, floor(log10(raw))), m = raw / p;
  return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}

enum { W = 720, H = 440, ML = 70, MR = 20, MT = 40, MB = 55 };

typedef struct {
  double x0, x1, y0, y1;
} Box;

static double px(const Box *b, double x) { return ML + (x - b->x0) / (b->x1 - b->x0) * (W - ML - MR); }
static double py(const Box *b, double y) { return H - MB - (y - b->y0) / (b->y1 - b->y0) * (H - MT - MB); }

static void axes(FILE *f, const Box *b, const char *title) {
  fprintf(f, "<rect x='0' y='0' width='%d' height='%d' fill='white'/>\n", W, H);
  fprintf(f, "<text x='%d' y='24' font-size='16' text-anchor='middle'>%s</text>\n", W / 2, title);
  double xs = tick_step(b->x1 - b->x0, 8), ys = tick_step(b->y1 - b->y0, 6);
  for (double x = ceil(b->x0 / xs) * xs; x <= b->x1 + 1e-9 * xs; x += xs)
    fprintf(f,
            "<line x1='%.1f' y1='%d' x2='%.1f' y2='%d' stroke='#ddd'/>"
            "<text x='%.1f' y='%d' font-size='11' text-anchor='middle'>%g</text>\n",
            px(b, x), MT, px(b, x), H - MB, px(b, x), H - MB + 16, x);
  for (double y = ceil(b->y0 / ys) * ys; y <= b->y1 + 1e-9 * ys; y += ys)
    fprintf(f,
            "<line x1='%d' y1='%.1f' x2='%d' y2='%.1f' stroke='#ddd'/>"
            "<text x='%d' y='%.1f' font-size='11' text-anchor='end'>%g</text>\n",
            ML, py(b, y), W - MR, py(b, y), ML - 6, py(b, y) + 4, fabs(y) < ys * 1e-6 ? 0.0 : y);
  fprintf(f, "<rect x='%d' y='%d' width='%d' height='%d' fill='none' stroke='black'/>\n", ML, MT, W - ML - MR,
          H - MT - MB);
  fprintf(f, "<text x='%d' y='%d' font-size='13' text-anchor='middle'>step</text>\n", (W + ML - MR) / 2, H - 15);
  fprintf(f, "<text x='18' y='%d' font-size='13' text-anchor='middle' transform='rotate(-90 18 %d)'>loss</text>\n",
          (H + MT - MB) / 2, (H + MT - MB) / 2);
}

static void polyline(FILE *f, const Box *b, const double *x, const double *y, int n, const char *style) {
  fprintf(f, "<polyline fill='none' %s points='", style);
  for (int i = 0; i < n; i++) fprintf(f, "%.1f,%.1f ", px(b, x[i]), py(b, y[i]));
  fprintf(f, "'/>\n");
}

static void legend(FILE *f, int nv) {
  int x = W - MR - 150, y = MT + 18;
  fprintf(f, "<line x1='%d' y1='%d' x2='%d' y2='%d' stroke='#4a7fd4' stroke-width='1.5'/>", x, y - 4, x + 24, y - 4);
  fprintf(f, "<text x='%d' y='%d' font-size='12'>train loss</text>\n", x + 30, y);
  if (!nv) return;
  y += 18;
  fprintf(f, "<line x1='%d' y1='%d' x2='%d' y2='%d' stroke='#d4504a' stroke-width='2'/>", x, y - 4, x + 24, y - 4);
  fprintf(f, "<text x='%d' y='%d' font-size='12'>validation loss</text>\n", x + 30, y);
}

// The box around every finite point, padded a little.
static Box bounds(const Series *s) {
  Box b = {INFINITY, -INFINITY, INFINITY, -INFINITY};
  for (int k = 0; k < 2; k++)
    for (int i = 0; i < (k ? s->nv : s->n); i++) {
      double x = k ? s->vstep[i] : s->step[i], y = k ? s->vloss[i] : s->loss[i];
      if (!isfinite(y)) continue;
      b.x0 = fmin(b.x0, x), b.x1 = fmax(b.x1, x), b.y0 = fmin(b.y0, y), b.y1 = fmax(b.y1, y);
    }
  if (!(b.x0 <= b.x1)) b = (Box){0, 1, 0, 1};
  if (b.x1 - b.x0 < 1) b.x1 = b.x0 + 1;
  double pad = (b.y1 - b.y0) * 0.05 + 1e-3;
  b.y0 = fmax(0, b.y0 - pad), b.y1 += pad;
  return b;
}

static bool write_svg(FILE *f, const Series *s, const char *title) {
  Box b = bounds(s);
  fprintf(f, "<svg xmlns='http://www.w3.org/2000/svg' width='%d' height='%d' font-family='sans-serif'>\n", W, H);
  axes(f, &b, title);
  polyline(f, &b, s->step, s->loss, s->n, "stroke='#4a7fd4' stroke-width='1.2'");
  polyline(f, &b, s->vstep, s->vloss, s->nv, "stroke='#d4504a' stroke-width='2'");
  for (int i = 0; i < s->nv; i++)
    fprintf(f, "<circle cx='%.1f' cy='%.1f' r='3' fill='#d4504a'/>\n", px(&b, s->vstep[i]), py(&b, s->vloss[i]));
  legend(f, s->nv);
  fprintf(f, "</svg>\n");
  return !ferror(f);
}

// Escapes &, <, > and quotes for SVG text.
static void xml_escape(const char *s, char *out, size_t n) {
  size_t k = 0;
  for (; *s && k + 7 < n; s++) {
    const char *e = *s == '&' ? "&amp;" : *s == '<' ? "&lt;" : *s == '>' ? "&gt;" : *s == '\'' ? "&apos;" : NULL;
    if (e) k += (size_t)snprintf(out + k, n - k, "%s", e);
    else out[k++] = *s;
  }
  out[k] = 0;
}

bool heed_metrics_plot(const char *csv, const char *svg, const char *title, char *err, size_t errlen) {
  FILE *in = fopen(csv, "r");
  if (!in) {
    snprintf(err, errlen, "cannot read '%s': %s", csv, strerror(errno));
    return false;
  }
  Series s = {0};
  bool ok = read_log(in, &s, -1, NULL);
  fclose(in);
  char esc[512], why[4400] = "";
  xml_escape(title, esc, sizeof esc);
  RtOutFile o = {.fd = -1};
  FILE *f = ok && rt_out_open(&o, svg, 0666, why, sizeof why) == RT_OK ? rt_out_stream(&o) : NULL;
  ok = f && write_svg(f, &s, esc);
  if (!ok) {
    if (!why[0]) snprintf(why, sizeof why, "%s: %s", svg, strerror(errno));
    rt_out_abort(&o);
  } else {
    ok = rt_out_commit(&o, why, sizeof why) == RT_OK;
  }
  if (!ok) snprintf(err, errlen, "cannot write %s", why);
  series_free(&s);
  return ok;
}

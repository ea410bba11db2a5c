/* The detection-engine benchmark's peer (bench/engine.sh): the engine's rule set, exported by
 * `engine_bench --export`, compiled into one Hyperscan/Vectorscan database (Debian's libvectorscan-dev)
 * and scanned over the same texts. Usage: hs_peer PATTERNS SECONDS TEXT...
 *
 * Byte mode (no HS_FLAG_UTF8): the engine's phrase gaps are bytes too, and matching Unicode-aware `.`
 * repeats across hundreds of patterns makes Hyperscan's compiler take many minutes. Patterns Hyperscan
 * cannot compile (syntax it lacks) are skipped and counted. Every match is reported to
 * a callback that counts it (no start offsets, no validation, no normalization): strictly less work than
 * the engine does. Output, one line per figure, parsed by engine_bench:
 *   compiled N skipped M
 *   text BYTES mbps MB_PER_S p99_us P99 matches K
 *   fixed_ns NS
 */
#include <hs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int on_match(unsigned int id, unsigned long long from, unsigned long long to, unsigned int flags,
                    void *ctx) {
  (void)id, (void)from, (void)to, (void)flags;
  ++*(unsigned long long *)ctx;
  return 0;
}

static char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc((size_t)n + 1);
  if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
    fclose(f);
    free(buf);
    return NULL;
  }
  buf[n] = 0;
  fclose(f);
  *len = (size_t)n;
  return buf;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: hs_peer PATTERNS SECONDS TEXT...\n");
    return 2;
  }
  size_t plen;
  char *pfile = read_file(argv[1], &plen);
  if (!pfile) {
    fprintf(stderr, "hs_peer: cannot read %s\n", argv[1]);
    return 2;
  }
  double seconds = atof(argv[2]);

  /* One pattern per line; keep those Hyperscan accepts on their own. */
  size_t cap = 4096, n = 0, skipped = 0;
  const char **exprs = calloc(cap, sizeof *exprs);
  unsigned *flags = calloc(cap, sizeof *flags), *ids = calloc(cap, sizeof *ids);
  for (char *line = strtok(pfile, "\n"); line && n < cap; line = strtok(NULL, "\n")) {
    hs_database_t *one = NULL;
    hs_compile_error_t *err = NULL;
    unsigned f = HS_FLAG_ALLOWEMPTY;
    if (hs_compile(line, f, HS_MODE_BLOCK, NULL, &one, &err) != HS_SUCCESS) {
      hs_free_compile_error(err);
      skipped++;
      continue;
    }
    hs_free_database(one);
    exprs[n] = line, flags[n] = f, ids[n] = (unsigned)n;
    n++;
  }
  hs_database_t *db = NULL;
  hs_compile_error_t *err = NULL;
  if (hs_compile_multi(exprs, flags, ids, (unsigned)n, HS_MODE_BLOCK, NULL, &db, &err) != HS_SUCCESS) {
    fprintf(stderr, "hs_peer: compile failed: %s\n", err->message);
    return 1;
  }
  hs_scratch_t *scratch = NULL;
  if (hs_alloc_scratch(db, &scratch) != HS_SUCCESS) return 1;
  printf("compiled %zu skipped %zu\n", n, skipped);

  for (int t = 3; t < argc; t++) {
    size_t len;
    char *text = read_file(argv[t], &len);
    if (!text) {
      fprintf(stderr, "hs_peer: cannot read %s\n", argv[t]);
      return 2;
    }
    unsigned long long matches = 0;
    size_t runs = 0, cap_lat = 1 << 20;
    double *lat = malloc(cap_lat * sizeof *lat);
    double start = now(), end = start + seconds;
    while (now() < end && runs < cap_lat) {
      double t0 = now();
      hs_scan(db, text, (unsigned)len, 0, scratch, on_match, &matches);
      lat[runs++] = now() - t0;
    }
    double elapsed = now() - start;
    qsort(lat, runs, sizeof *lat, cmp_double);
    printf("text %zu mbps %.1f p99_us %.2f matches %llu\n", len, (double)len * (double)runs / elapsed / 1e6,
           lat[(size_t)((double)runs * 0.99)] * 1e6, matches / (runs ? runs : 1));
    free(lat);
    free(text);
  }

  /* Fixed cost: a one-byte text. */
  unsigned long long matches = 0;
  size_t runs = 0;
  double start = now();
  while (runs < 200000) {
    hs_scan(db, "a", 1, 0, scratch, on_match, &matches);
    runs++;
  }
  printf("fixed_ns %.0f\n", (now() - start) / (double)runs * 1e9);
  hs_free_scratch(scratch);
  hs_free_database(db);
  return 0;
}

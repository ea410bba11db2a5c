# Shared by the benchmark scripts (sourced).

# Installs oha, the HTTP load generator, from crates.io when it is missing.
ensure_oha() {
  if ! command -v oha >/dev/null; then
    echo "[bench] installing oha (load generator) from crates.io" >&2
    cargo install oha --locked --quiet
  fi
}

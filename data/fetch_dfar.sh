#!/usr/bin/env bash
# Places the DFAR CSVs in DIR for machines without ../shared, then checks them.
#   DFAR_URL_BASE=<URL or local folder holding the authors' release> data/fetch_dfar.sh DIR
# Point data.train / data.test at DIR afterwards. Files land atomically.
set -euo pipefail
dir=${1:?usage: DFAR_URL_BASE=... data/fetch_dfar.sh DIR}
base=${DFAR_URL_BASE:?set DFAR_URL_BASE to the URL or folder of the DFAR release (DFAR_trainset.csv, DFAR_testset.csv)}
mkdir -p "$dir"
for f in DFAR_trainset.csv DFAR_testset.csv; do
  [ -s "$dir/$f" ] && continue
  case "$base" in
    http://* | https://*) curl -fsSL "$base/$f" -o "$dir/$f.tmp" ;;
    *) cp "$base/$f" "$dir/$f.tmp" ;;
  esac
  mv "$dir/$f.tmp" "$dir/$f"
done
python3 - "$dir" <<'PY'
import csv, sys
for name, rows in (("DFAR_trainset.csv", 4500), ("DFAR_testset.csv", 500)):
    with open(f"{sys.argv[1]}/{name}", encoding="utf-8-sig", newline="") as f:
        n = sum(1 for _ in csv.reader(f)) - 1
    if n != rows:
        sys.exit(f"{name}: {n} rows, expected {rows}")
print("DFAR files present and complete")
PY

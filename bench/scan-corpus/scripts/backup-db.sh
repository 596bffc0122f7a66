#!/bin/sh
# Nightly logical backup of the orders database.
set -e
STAMP=$(date +%Y%m%d)
pg_dump "postgresql://backup:ZopUtChU9HEOsPEi@pg-primary.internal:5432/orders" \
  --format=custom --file "/backups/orders-${STAMP}.dump"
pg_dump "postgresql://backup:${PGPASSWORD}@pg-replica.internal:5432/orders" --schema-only > /backups/schema.sql
sha256sum "/backups/orders-${STAMP}.dump" > "/backups/orders-${STAMP}.dump.sha256"

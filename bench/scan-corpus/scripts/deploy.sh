#!/usr/bin/env bash
# Deploy the current build to production. Run from the repo root.
set -euo pipefail

export GITHUB_TOKEN="ghs_8fFcJ3A69MNSUBKzJNW6Uv2u8qeAD83LuIul"
export SLACK_BOT_TOKEN="xoxb-737639771151-7449190759243-IjQtKgYYHppOhpOZqvjes1XX"
export AWS_ACCESS_KEY_ID=AKIA2PNGB6JM5P24AR5R
export AWS_SECRET_ACCESS_KEY=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
export AWS_DEFAULT_REGION=eu-west-1

COMMIT_SHA="$(git rev-parse HEAD)"
EXPECTED_SHA256="0991bf9578acb43c9a37ec269e2c65afde6da07454a99afc39cfcd44df07e4b7"

echo "deploying ${COMMIT_SHA}"
sha256sum -c <<< "${EXPECTED_SHA256}  dist/app.tar.gz"

aws s3 cp dist/app.tar.gz "s3://shop-releases/${COMMIT_SHA}.tar.gz"

python -m twine upload --non-interactive -u __token__ -p pypi-AgEIcHlwaS5vcmcpJ-q1c9hHOqCzsOM3v4CNwAp9oFCouTdimD8hvPvaE3EX2uBb3qT0xEUqvSmTdLbFDcNDQ dist/*.whl

curl -sS -X POST https://slack.com/api/chat.postMessage \
  -H "Authorization: Bearer ${SLACK_BOT_TOKEN}" \
  -d channel=C0123ABCDEF -d text="Deployed ${COMMIT_SHA}"

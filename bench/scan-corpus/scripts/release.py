#!/usr/bin/env python3
"""Create a GitHub release for the current tag."""
import subprocess
import sys

import requests

# installation token of the "release-bot" GitHub App (expires hourly, refreshed by cron)
INSTALLATION_TOKEN = "ghs_bwSyjTCww4eYe0HjVpyygeFzfB9qIc1gUcx8"
PLACEHOLDER_TOKEN = "ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"


def main():
    tag = subprocess.check_output(["git", "describe", "--tags"]).decode().strip()
    commit = "7c20669b4b068259b93ab1d47e82c6bd77c0b66d"
    r = requests.post(
        "https://api.github.com/repos/acme/storefront/releases",
        headers={"Authorization": f"token {INSTALLATION_TOKEN}"},
        json={"tag_name": tag, "target_commitish": commit},
        timeout=30,
    )
    r.raise_for_status()


if __name__ == "__main__":
    sys.exit(main())

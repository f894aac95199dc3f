#!/bin/sh
# Chromium inside the network namespace $NETNS (playwright's `executablePath` for a viewer that
# lives behind a shaped link; see simulcast.test.mjs). $CHROMIUM picks the browser.
set -eu
exec ip netns exec "$NETNS" "${CHROMIUM:-/usr/bin/chromium}" "$@"

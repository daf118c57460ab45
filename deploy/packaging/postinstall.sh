#!/bin/sh
# After the nexo package is installed: systemd learns the units; nothing is
# enabled or started (systemctl enable --now nexo, or nexo-worker).
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || true
fi
exit 0

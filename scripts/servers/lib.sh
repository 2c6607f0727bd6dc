# Shared by scripts/servers/postgres.sh and mariadb.sh (sourced, not run).

# apt-get install without starting the packaged service (the Debian
# packages would start their own servers): a policy-rc.d saying "no" for the
# install's duration when the machine has none.
apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  local policy=/usr/sbin/policy-rc.d made=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# mailvault scripts/servers: no service starts during this install\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    made=1
  fi
  local rc=0
  { apt-get update -qq && apt-get install -y -qq "$@" >/dev/null; } || rc=$?
  [ -n "$made" ] && rm -f "$policy"
  return "$rc"
}

# Runs a command as the server's unprivileged owner (`$owner`).
run_as_owner() {
  setpriv --reuid="$owner" --regid="$(id -g "$owner")" --init-groups -- "$@"
}

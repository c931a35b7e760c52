# Build dependencies from Debian's packages that the Swift build needs (sourced by demo.sh and
# test.sh): SQLite's headers for GRDB (the profile store). Installed only when missing; needs root.
if [ ! -e /usr/include/sqlite3.h ]; then
    echo "== installing libsqlite3-dev (SQLite headers for the profile store)" >&2
    (apt-get update -qq && apt-get install -y -qq libsqlite3-dev) >/dev/null
fi

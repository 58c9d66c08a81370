# Sourced by ./run and ./test: make .venv hold this project and its dev tools.
# Creates .venv with the first Python >= 3.11 it finds, and reinstalls only when pyproject.toml changed
# since the last install (its sha256 is kept in .venv/.oms-installed).

oms_find_python() {
    local candidate
    for candidate in "${PYTHON:-}" python3 python3.13 python3.12 python3.11 python; do
        [ -n "$candidate" ] || continue
        command -v "$candidate" >/dev/null 2>&1 || continue
        if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

oms_bootstrap() {
    local root="$1" python stamp want
    if [ ! -x "$root/.venv/bin/python" ]; then
        if ! python="$(oms_find_python)"; then
            echo "error: Python 3.11 or newer is needed (set PYTHON=/path/to/python3.11 to choose one)" >&2
            return 1
        fi
        echo "Creating .venv with $("$python" --version 2>&1)..." >&2
        if ! "$python" -m venv "$root/.venv"; then
            echo "error: could not create .venv (on Debian/Ubuntu: apt-get install python3-venv)" >&2
            return 1
        fi
    fi
    stamp="$root/.venv/.oms-installed"
    want="$("$root/.venv/bin/python" -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' "$root/pyproject.toml")"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        echo "Installing OMS and its dependencies into .venv..." >&2
        "$root/.venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$root[dev]"
        echo "$want" >"$stamp"
    fi
}

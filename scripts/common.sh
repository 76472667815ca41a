# Shared by the comparison scripts (sourced, not run): finding and installing the peers.

# Installs Debian package $2 if the binary $1 is on neither PATH nor /usr/sbin, /usr/bin.
install_if_missing() {
    local bin=$1 package=$2
    if ! command -v "$bin" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$bin" ] && [ ! -x "/usr/bin/$bin" ]; then
        echo "$(basename "$0"): $bin not found; installing the Debian package $package" >&2
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo=sudo
        $sudo apt-get update -q
        $sudo apt-get install -y -q "$package"
    fi
}

# The path of binary $1: from PATH, else /usr/sbin, else /usr/bin.
find_bin() {
    local bin=$1
    if command -v "$bin" >/dev/null 2>&1; then command -v "$bin"
    elif [ -x "/usr/sbin/$bin" ]; then echo "/usr/sbin/$bin"
    else echo "/usr/bin/$bin"
    fi
}

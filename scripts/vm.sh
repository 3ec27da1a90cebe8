#!/usr/bin/env bash
# Runs one command as root inside a throw-away VM booted with Debian's stock
# kernel, and exits with that command's status. The host kernel here lacks
# wireguard, ipip and esp4 (see the README's "Tests"); Debian's kernel has
# them all as modules, so the kernel paths of those backends are tested in
# the VM. The guest sees the host's own filesystem read-only (with
# throw-away overlays), so built binaries run unchanged; it has no network
# device, so nothing it does reaches the host's network, and nothing is
# loaded into the host kernel. Installs what it needs when missing (needs
# root for that). Run with --help for the options.
set -euo pipefail

venv_version=1.42  # virtme-ng: the version this script was tested with
venv="${WEFT_VM_VENV:-/opt/vng-venv}"
memory="${WEFT_VM_MEMORY:-3G}"
cpus="${WEFT_VM_CPUS:-2}"
timeout_s="${WEFT_VM_TIMEOUT:-1800}"
kvm="${WEFT_VM_KVM:-auto}"
kvm_probe_s="${WEFT_VM_KVM_PROBE_TIMEOUT:-20}"
# tun: /dev/net/tun appears only once it is loaded (userspace WireGuard);
# br_netfilter: loaded on every Kubernetes node, and `weft check` says so.
modules="${WEFT_VM_MODULES-wireguard ipip esp4 tun br_netfilter}"
verbose=0
rwdirs=()

usage() {
  cat <<'EOF'
Usage: scripts/vm.sh [options] [--] CMD [ARGS...]

Runs CMD with ARGS as root inside a throw-away VM booted with Debian's stock
kernel (virtme-ng + qemu), and exits with CMD's status. For kernel paths the
host kernel lacks: the wireguard, ipip, esp4, tun and br_netfilter modules
are loaded (best effort) before CMD runs.

The guest sees the host's filesystem read-only, with throw-away overlays on
/etc /home /lib /opt /srv /tmp /usr /var (writes there vanish with the VM);
/run is a fresh tmpfs. Use --rwdir for results that must outlive the VM. CMD
runs in the current directory, with the host's PATH plus the sbin
directories. The guest has no network device. CMD's stdin is this script's
stdin when that is a file or a pipe; a terminal is not passed (CMD gets
/dev/null). Host environment variables are not passed: use `env NAME=VALUE
CMD ...`.

Options:
  -m, --memory SIZE     guest memory, qemu syntax (default 3G; WEFT_VM_MEMORY)
  -c, --cpus N          guest CPUs (default 2; WEFT_VM_CPUS)
  -t, --timeout SECS    limit on the VM run, boot included (the KVM probe
                        has its own); qemu is killed after it and the script
                        exits 124 (default 1800; WEFT_VM_TIMEOUT)
      --rwdir DIR       make host directory DIR writable in the guest, at the
                        same path (or GUESTPATH=HOSTDIR); repeatable. Paths
                        may hold only letters, digits and _ . / + , : @ % -
      --kvm MODE        auto (default; WEFT_VM_KVM): first boot a probe VM
                        with KVM, limited to WEFT_VM_KVM_PROBE_TIMEOUT
                        seconds (default 20), and use KVM only if it ran;
                        otherwise emulate. On the project's machines KVM
                        fails (qemu dies in ~3 s: "failed to set MSR"), so
                        auto costs ~3 s there. off: always emulate (TCG;
                        slow, works everywhere). on: KVM without a probe.
  -v, --verbose         show the guest's boot console on stderr
  -h, --help            this text

Environment:
  WEFT_VM_KERNEL   kernel image to boot (default: the newest
                   /boot/vmlinuz-*-amd64); its modules must be in
                   /lib/modules/<version> on the host
  WEFT_VM_MODULES  modules to modprobe in the guest before CMD (default
                   "wireguard ipip esp4 tun br_netfilter"; empty for none)
  WEFT_VM_VENV     virtme-ng's virtualenv (default /opt/vng-venv)
  and WEFT_VM_MEMORY, WEFT_VM_CPUS, WEFT_VM_TIMEOUT, WEFT_VM_KVM,
  WEFT_VM_KVM_PROBE_TIMEOUT as above.

Exit status: CMD's; 124 when the timeout hit; 125 when the VM failed to
boot or died before CMD finished (rerun with --verbose); 2 for a usage
error; 1 when something is missing and cannot be installed.

A run takes 15-50 s more than CMD itself under TCG. Example:
  scripts/vm.sh -- target/debug/weft lab up --backend ipip
  scripts/vm.sh -- sh -c 'w=target/debug/weft; $w lab up --name t --backend ipip &&
                          $w lab check --name t; s=$?; $w lab down --name t; exit $s'
EOF
}

die() { echo "vm: $*" >&2; exit 1; }
usage_error() { echo "vm: $*; see scripts/vm.sh --help" >&2; exit 2; }

# ---- options
while (($#)); do
  case "$1" in
    --) shift; break ;;
    -h|--help) usage; exit 0 ;;
    -v|--verbose) verbose=1; shift; continue ;;
    --*=*) opt="${1%%=*}"; val="${1#*=}"; shift ;;
    -*) opt="$1"; (($# >= 2)) || usage_error "$opt needs a value"; val="$2"; shift 2 ;;
    *) break ;;  # the command itself
  esac
  case "$opt" in
    -m|--memory) memory="$val" ;;
    -c|--cpus) cpus="$val" ;;
    -t|--timeout) timeout_s="$val" ;;
    --rwdir) rwdirs+=("$val") ;;
    --kvm) kvm="$val" ;;
    *) usage_error "unknown option $opt" ;;
  esac
done
(($# > 0)) || usage_error "no command given"

[[ "$memory" =~ ^[1-9][0-9]*[KMGT]?$ ]] || usage_error "memory must look like 3G, not '$memory'"
[[ "$cpus" =~ ^[1-9][0-9]*$ ]] || usage_error "cpus must be a positive integer, not '$cpus'"
[[ "$timeout_s" =~ ^[1-9][0-9]*$ ]] || usage_error "timeout must be whole seconds, not '$timeout_s'"
[[ "$kvm_probe_s" =~ ^[1-9][0-9]*$ ]] || usage_error "WEFT_VM_KVM_PROBE_TIMEOUT must be whole seconds"
case "$kvm" in auto|on|off) ;; *) usage_error "kvm must be auto, on or off, not '$kvm'" ;; esac

# vng pastes --rwdir values into a shell command line unquoted, so anything
# but plain path characters would be split or interpreted there.
safe_path='^[A-Za-z0-9_./+,:@%-]+$'
vng_rwdirs=()
for d in "${rwdirs[@]}"; do
  if [[ "$d" == *=* ]]; then
    guest="${d%%=*}" host="${d#*=}"
  else
    guest="" host="$d"
  fi
  [[ -d "$host" ]] || usage_error "--rwdir $host: no such directory"
  host="$(realpath -e -- "$host")"
  [[ -n "$guest" ]] || guest="$host"
  [[ "$guest" == /* ]] || usage_error "--rwdir $d: the guest path must be absolute"
  [[ "$host" =~ $safe_path && "$guest" =~ $safe_path ]] \
    || usage_error "--rwdir $d: only letters, digits and _ . / + , : @ % - are allowed in the path"
  vng_rwdirs+=(--rwdir "$guest=$host")
done

# ---- what the VM needs, installed only when missing (as scripts/install-deps.sh)
packages=(
  qemu-system-x86    # the emulator
  linux-image-amd64  # Debian's stock kernel with every module in /lib/modules
  busybox-static     # virtme-ng builds its initramfs from it
  python3-venv       # virtme-ng's own virtualenv (the system Python is externally managed)
  kmod               # modprobe: the guest runs the host's userland
)
missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [[ ${#missing[@]} -gt 0 ]]; then
  if [[ $(id -u) -ne 0 ]]; then
    die "not root; install these with apt-get first: ${missing[*]}"
  fi
  echo "vm: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  # --no-install-recommends: qemu would otherwise pull in display and audio stacks.
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

# The version check (not just "vng exists") also repairs a venv that holds
# another release: only 1.42's exit-status handling was checked.
installed_version() {
  "$venv/bin/python3" -c 'import importlib.metadata as m; print(m.version("virtme-ng"))' 2>/dev/null
}
if [[ ! -x "$venv/bin/vng" || "$(installed_version)" != "$venv_version" ]]; then
  if [[ ! -w "$(dirname "$venv")" && ! -w "$venv" ]]; then
    die "virtme-ng $venv_version is not in $venv and it cannot be written here; run as root or set WEFT_VM_VENV"
  fi
  echo "vm: installing virtme-ng==$venv_version into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "virtme-ng==$venv_version" >&2
fi

# ---- the kernel
if [[ -n "${WEFT_VM_KERNEL:-}" ]]; then
  kernel="$WEFT_VM_KERNEL"
  [[ -f "$kernel" ]] || die "WEFT_VM_KERNEL=$kernel: no such file"
else
  kernel="$(compgen -G '/boot/vmlinuz-*-amd64' | sort -V | tail -n 1 || true)"
  [[ -n "$kernel" ]] || die "no /boot/vmlinuz-*-amd64 to boot; install linux-image-amd64 or set WEFT_VM_KERNEL"
fi
[[ -r "$kernel" ]] || die "$kernel is not readable by this user; run as root"
kver="$(basename "$kernel")"
if [[ "$kver" == vmlinuz-* && ! -d "/lib/modules/${kver#vmlinuz-}" ]]; then
  echo "vm: warning: no /lib/modules/${kver#vmlinuz-}; the guest may not boot and modprobe will fail" >&2
fi

# ---- running the VM
# virtme-ng passes stdin, stdout and stderr to qemu, which opens
# /proc/self/fd/1 and /proc/self/fd/2 anew. On a regular file that open
# truncates it and writes from offset 0, clobbering what the caller wrote
# (`vm.sh ... >>log` would lose the log). Pipes have no offset, so qemu
# always gets pipes: one through cat, one through a filter that drops a
# harmless 9p message. These readers ignore the signals that stop the VM
# so they pass on everything it printed before dying.
state="$(mktemp -d /tmp/weft-vm.XXXXXXXX)"
exec 3> >(trap '' INT TERM HUP; exec cat)
out_pid=$!
exec 4> >(exec 3>&-; trap '' INT TERM HUP
          exec grep --line-buffered -v 'qemu-system-[^:]*: 9p: broken or compromised client detected' >&2)
err_pid=$!
finish_output() {
  exec 3>&- 4>&-
  wait "$out_pid" "$err_pid" 2>/dev/null || true
}
trap 'finish_output; rm -rf "$state"' EXIT

# A terminal on stdin would be put in raw mode by qemu, and qemu runs in a
# background process group below (SIGTTIN); CMD is not interactive anyway.
# A closed stdin would make virtme-ng drop the guest's stderr.
if [[ -t 0 ]] || ! { true <&0; } 2>/dev/null; then
  exec </dev/null
fi

# timeout(1) puts the VM (vng, virtme-run, qemu) in its own process group and
# kills the whole group, so no qemu outlives its limit. Being a separate
# group, it does not see the terminal's ^C: forward signals to it by hand.
child=""
signalled=""
# shellcheck disable=SC2317 # called by the traps
forward() {
  signalled="$1"
  if [[ -n "$child" ]]; then
    kill -s "$1" "$child" 2>/dev/null || true
  else
    stop_if_signalled
  fi
}

# run_limited SECONDS OUTFD ERRFD CMD...: runs CMD under timeout, with
# stdout and stderr on those descriptors, and returns its status. The
# redirections are here, not on the call: exiting (on a signal) from a
# function whose caller redirected it leaves copies of the output pipes
# open, and their readers then wait for ever.
run_limited() {
  local secs="$1" out="$2" err="$3" rc
  shift 3
  timeout -k 10 "$secs" "$@" <&0 >&"$out" 2>&"$err" &
  child=$!
  while :; do
    rc=0
    wait "$child" || rc=$?
    # A trapped signal ends `wait` early (128+n) while the VM still runs.
    kill -0 "$child" 2>/dev/null || break
  done
  child=""
  return "$rc"
}

stop_if_signalled() {
  [[ -n "$signalled" ]] || return 0
  finish_output
  echo "vm: interrupted (SIG$signalled); the VM was stopped" >&2
  exit $((128 + $(kill -l "$signalled")))
}
trap 'forward INT' INT
trap 'forward TERM' TERM
trap 'forward HUP' HUP

host_path="$PATH"
export PATH="$venv/bin:$PATH"  # vng execs virtme-run from its venv
# --force-9p: Debian's qemu ships the old C virtiofsd in /usr/lib/qemu,
# whose command line vng 1.42 does not speak; vng would try it twice,
# waiting ~3 s each time, before falling back to 9p anyway.
# --cwd /: the guest script enters the working directory itself, and
# carries on (with a warning) where the guest cannot.
vng_args=(--run "$kernel" --force-9p --cwd /)
((verbose)) && vng_args+=(--verbose)

if [[ "$kvm" == auto ]]; then
  # A guest that hangs at boot is the failure seen here, hence the limit;
  # the probe's stdin is /dev/null so that it eats none of CMD's input.
  if [[ ! ( -r /dev/kvm && -w /dev/kvm ) ]]; then
    kvm=off
    echo "vm: no usable /dev/kvm: emulating (TCG)" >&2
  else
    probe_rc=0
    probe_start=$SECONDS
    exec 5<>/dev/null
    run_limited "$kvm_probe_s" 5 5 vng "${vng_args[@]}" --memory 512M --cpus 1 \
      --exec true <&5 || probe_rc=$?
    exec 5>&-
    stop_if_signalled
    if [[ $probe_rc -eq 0 ]]; then
      kvm=on
    elif ((SECONDS - probe_start >= kvm_probe_s)); then
      kvm=off
      echo "vm: a KVM guest did not finish booting in ${kvm_probe_s}s: emulating (TCG)" >&2
    else
      kvm=off
      echo "vm: the KVM probe failed (status $probe_rc; --kvm on shows why): emulating (TCG)" >&2
    fi
  fi
elif [[ "$kvm" == on && ! ( -r /dev/kvm && -w /dev/kvm ) ]]; then
  die "--kvm on, but /dev/kvm is missing or not accessible"
fi
[[ "$kvm" == on ]] || vng_args+=(--disable-kvm)

# The guest script lives in a directory shared read-write with the guest
# (rather than in vng --exec, which rides on the 2 KiB kernel command line).
# It also leaves two marks there: "started" and CMD's exit status. They tell
# a command that failed apart from a VM that never got to run it, whatever
# status vng itself reports.
cmd_q="$(printf '%q ' "$@")"
# The host's PATH (built binaries, ~/.cargo/bin) plus the sbin directories
# that a non-root PATH lacks: ip, modprobe, iptables live there.
guest_path="$host_path"
for d in /usr/local/sbin /usr/local/bin /usr/sbin /usr/bin /sbin /bin; do
  [[ ":$guest_path:" == *":$d:"* ]] || guest_path="${guest_path:+$guest_path:}$d"
done
{
  echo '# Written by scripts/vm.sh; runs inside the VM.'
  echo ': > /run/weft-vm/started'
  printf 'export PATH=%q\n' "$guest_path"
  if [[ -n "$modules" ]]; then
    # shellcheck disable=SC2086 # one word per module
    printf 'modprobe -q -a%s 2>/dev/null || true\n' "$(printf ' %q' $modules)"
  fi
  printf 'cwd=%q\n' "$PWD"
  printf 'cmd=(%s)\n' "$cmd_q"
  cat <<'GUEST'
cd -- "$cwd" 2>/dev/null || echo "vm: $cwd is not visible in the guest; running in /" >&2
"${cmd[@]}"
rc=$?
echo "$rc" > /run/weft-vm/status
exit "$rc"
GUEST
} > "$state/guest.sh"

echo "vm: booting $kernel ($([[ $kvm == on ]] && echo KVM || echo TCG), $memory, $cpus CPUs, limit ${timeout_s}s)" >&2
start=$SECONDS
vng_rc=0
run_limited "$timeout_s" 3 4 vng "${vng_args[@]}" --memory "$memory" --cpus "$cpus" --rwdir "/run/weft-vm=$state" "${vng_rwdirs[@]}" \
  --exec 'exec /bin/bash /run/weft-vm/guest.sh' || vng_rc=$?
elapsed=$((SECONDS - start))
stop_if_signalled
finish_output

# A status file means CMD finished, whatever happened to the VM after.
if [[ -f "$state/status" ]]; then
  rc="$(<"$state/status")"
  [[ "$rc" =~ ^[0-9]+$ ]] || die "the guest left an unreadable status '$rc'"
  exit "$rc"
fi
# No status: the VM was stopped or failed. timeout(1) says 124 both when it
# fired and when its command exited 124 itself; the clock tells which.
if [[ ( $vng_rc -eq 124 || $vng_rc -eq 137 ) && $elapsed -ge $timeout_s ]]; then
  echo "vm: timed out after ${timeout_s}s (--timeout / WEFT_VM_TIMEOUT); qemu was killed" >&2
  exit 124
fi
if [[ -f "$state/started" ]]; then
  echo "vm: the VM stopped while the command was running (vng exit $vng_rc, after ${elapsed}s): kernel panic, out of memory, power-off? Rerun with --verbose to see the console" >&2
else
  echo "vm: the VM failed to boot or to start the command (vng exit $vng_rc, after ${elapsed}s); rerun with --verbose to see the boot console" >&2
fi
exit 125

# Shared set-up steps for demo.sh and test.sh. Each step checks first and
# installs only what is missing, saying what it does.
set -euo pipefail

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

TOOLS="${ENGINE_TOOLS_DIR:-$HOME/.cache/engine-tools}"
APT_UPDATED=0

apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  if [ "$APT_UPDATED" -eq 0 ]; then
    say "apt-get update"
    $sudo apt-get update -qq
    APT_UPDATED=1
  fi
  say "installing ${missing[*]} (Debian packages)"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

need_ffmpeg() {
  command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null && return 0
  apt_install ffmpeg
}

# A headless browser for the `engine serve` browser test (fantoccini
# drives chromium through chromedriver): Debian's chromium and
# chromium-driver, about a minute to install.
need_chromium() {
  command -v chromium >/dev/null && command -v chromedriver >/dev/null && return 0
  apt_install chromium chromium-driver
}

need_rust() {
  command -v cargo >/dev/null && return 0
  echo "error: cargo was not found; install Rust 1.91 or newer (https://rustup.rs) and rerun" >&2
  exit 1
}

# An S3 server for the s3:// store tests: s3s-fs, built once into the tools cache.
need_s3_server() {
  S3S_BIN="$TOOLS/s3s-fs-0.14.1/bin/s3s-fs"
  if [ ! -x "$S3S_BIN" ]; then
    say "building the s3s-fs S3 server once into $TOOLS (about 2-3 minutes)"
    cargo install --quiet --locked s3s-fs@0.14.1 --features binary --root "$TOOLS/s3s-fs-0.14.1"
  fi
}

start_s3_server() {
  need_s3_server
  local dir port
  dir="$(mktemp -d /tmp/engine-s3.XXXXXX)"
  mkdir -p "$dir/engine-test"
  port="${ENGINE_TEST_S3_PORT:-9321}"
  say "starting s3s-fs on 127.0.0.1:$port (data in $dir)"
  "$S3S_BIN" --host 127.0.0.1 --port "$port" --access-key engine --secret-key engine-secret "$dir" \
    >"$dir.log" 2>&1 &
  S3_PID=$!
  for _ in $(seq 1 50); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
    sleep 0.1
  done
  export ENGINE_TEST_S3_ENDPOINT="http://127.0.0.1:$port"
  export ENGINE_TEST_S3_BUCKET="engine-test"
  export AWS_ACCESS_KEY_ID=engine AWS_SECRET_ACCESS_KEY=engine-secret AWS_REGION=us-east-1
}

# PostgreSQL for the catalog tests: Debian's server on loopback, password auth.
start_postgres() {
  apt_install postgresql
  local ver
  ver="$(ls /usr/lib/postgresql | sort -n | tail -1)"
  if ! pg_lsclusters -h | grep -q "^$ver main"; then
    say "creating PostgreSQL $ver cluster"
    pg_createcluster "$ver" main >/dev/null
  fi
  if ! pg_lsclusters -h | awk -v v="$ver" '$1==v && $2=="main" {print $4}' | grep -q online; then
    say "starting PostgreSQL $ver"
    pg_ctlcluster "$ver" main start
  fi
  local port
  port="$(pg_lsclusters -h | awk -v v="$ver" '$1==v && $2=="main" {print $3}')"
  su postgres -c "psql -qtAc \"SELECT 1 FROM pg_roles WHERE rolname='engine'\"" | grep -q 1 ||
    su postgres -c "psql -qc \"CREATE ROLE engine LOGIN PASSWORD 'engine' CREATEDB\""
  su postgres -c "psql -qtAc \"SELECT 1 FROM pg_database WHERE datname='engine_test'\"" | grep -q 1 ||
    su postgres -c "psql -qc \"CREATE DATABASE engine_test OWNER engine\""
  export ENGINE_TEST_PG_URL="postgres://engine:engine@127.0.0.1:$port/engine_test"
}

# Slurm for the executor tests: a slurmctld and ENGINE_TEST_SLURM_NODES
# (default 2) slurmd on this machine (no cgroups, no accounting),
# configured in a temporary folder. Several nodes use Slurm's
# multiple-slurmd mode, which Debian's build has (`scontrol show config`
# says `MULTIPLE_SLURMD = Yes`): nodes `node1`, `node2`, ... all on this
# host, each slurmd on its own port with its own spool, pid and log file
# (`%n` in their paths), each claiming the machine's cpus and memory
# (`config_overrides`), jobs placed on the least loaded node (`CR_LLN`) so
# work spreads over both. ENGINE_TEST_SLURM_NODES=1 gives the former single
# node named after the host.
start_slurm() {
  apt_install slurm-wlm slurmctld slurmd munge slurm-client
  local dir host cpus mem nodes port
  dir="$(mktemp -d /tmp/engine-slurm.XXXXXX)"
  host="$(hostname -s)"
  cpus="$(nproc)"
  mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 512 ))
  nodes="${ENGINE_TEST_SLURM_NODES:-2}"
  port="${ENGINE_TEST_SLURMD_PORT:-6918}"
  mkdir -p "$dir/state" "$dir/spool" "$dir/log"
  local node_lines names
  if [ "$nodes" -le 1 ]; then
    names="$host"
    node_lines="NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN"
  else
    names="node[1-$nodes]"
    node_lines=""
    for i in $(seq 1 "$nodes"); do
      node_lines+="NodeName=node$i NodeHostname=$host Port=$((port + i)) CPUs=$cpus RealMemory=$mem State=UNKNOWN"$'\n'
    done
  fi
  cat > "$dir/slurm.conf" <<CONF
ClusterName=engine
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory,CR_LLN
SlurmdParameters=config_overrides
# A job that asks no memory (a class without a memory size) would otherwise get
# the whole node's and hold it alone.
DefMemPerCPU=256
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/%n
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd-%n.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd-%n.log
SlurmctldPort=${ENGINE_TEST_SLURMCTLD_PORT:-6917}
SlurmdPort=$port
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
# Room for a 10,000-element run (bench/slurm.sh): finished elements stay
# listed for MinJobAge, and the default MaxJobCount is 10,000.
MaxJobCount=100000
$node_lines
PartitionName=main Nodes=$names Default=YES MaxTime=INFINITE State=UP
CONF
  if [ ! -s /etc/munge/munge.key ]; then
    (mungekey -c -f 2>/dev/null || create-munge-key -f) >/dev/null
  fi
  chown munge:munge /etc/munge/munge.key
  mkdir -p /run/munge /var/log/munge /var/lib/munge && chown munge:munge /run/munge /var/log/munge /var/lib/munge
  pgrep -x munged >/dev/null || su munge -s /bin/sh -c /usr/sbin/munged
  pkill -x slurmctld 2>/dev/null || true
  pkill -x slurmd 2>/dev/null || true
  sleep 0.5
  slurmctld -f "$dir/slurm.conf"
  if [ "$nodes" -le 1 ]; then
    say "starting slurmctld and slurmd (single node \`$host\`, config $dir/slurm.conf)"
    mkdir -p "$dir/spool/$host"
    slurmd -f "$dir/slurm.conf" -N "$host"
  else
    say "starting slurmctld and $nodes slurmd (nodes $names on this host, config $dir/slurm.conf)"
    for i in $(seq 1 "$nodes"); do
      mkdir -p "$dir/spool/node$i"
      slurmd -f "$dir/slurm.conf" -N "node$i"
    done
  fi
  export SLURM_CONF="$dir/slurm.conf"
  export ENGINE_TEST_SLURM_NODES="$nodes"
  for _ in $(seq 1 75); do
    if [ "$(sinfo -h -N -o %t 2>/dev/null | grep -c idle)" -ge "$nodes" ]; then
      export ENGINE_TEST_SLURM=1
      return 0
    fi
    sleep 0.2
  done
  echo "error: Slurm did not come up; logs in $dir/log" >&2
  tail -20 "$dir/log/"*.log >&2 || true
  return 1
}

# libtorch for the `torch` feature (tch 0.26 pairs with PyTorch 2.13.0): a venv
# in the tools cache, keyed by the torch version, so a fresh clone reuses it.
# Exports what the tch build needs; the binaries get an rpath to torch/lib
# (see .cargo/config.toml), so they run without LD_LIBRARY_PATH.
TORCH_VERSION=2.13.0
need_torch() {
  TORCH_VENV="$TOOLS/torch-$TORCH_VERSION"
  if [ ! -f "$TORCH_VENV/.complete" ]; then
    say "installing PyTorch $TORCH_VERSION into $TORCH_VENV once (libtorch for tch; about 70 s, 4.7 GB)"
    rm -rf "$TORCH_VENV"
    python3 -m venv "$TORCH_VENV"
    "$TORCH_VENV/bin/pip" install --quiet --disable-pip-version-check "torch==$TORCH_VERSION"
    touch "$TORCH_VENV/.complete"
  fi
  export PATH="$TORCH_VENV/bin:$PATH"
  export LIBTORCH_USE_PYTORCH=1
  export LIBTORCH_BYPASS_VERSION_CHECK="${LIBTORCH_BYPASS_VERSION_CHECK:-0}"
  TORCH_LIB="$("$TORCH_VENV/bin/python" -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null)"
  export TORCH_LIB
}

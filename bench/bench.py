#!/usr/bin/env python3
"""agora benchmark harness: make -j, ninja -j and agora side by side.

Run it through bench/run (make bench).  Settings come from the environment;
bench/README.md lists them and says what each printed number means.  This
program only measures and prints: it asserts no wall-clock limit.
"""

import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
BIN = os.path.join(TOP, "bin")     # replaced by a snapshot in main()
GEN = os.path.join(HERE, "gen")


PHASES = ("dag", "cpu", "strace", "tick", "submit", "rss", "verify")


def env_int(name, default):
    v = os.environ.get(name, "")
    if v == "":
        return default
    try:
        n = int(v)
    except ValueError:
        sys.exit("bench: %s=%r is not an integer" % (name, v))
    if n < 0:
        sys.exit("bench: %s=%r is negative" % (name, v))
    return n


def log(msg):
    sys.stderr.write("bench: %s\n" % msg)
    sys.stderr.flush()


class Config:
    def __init__(self):
        quick = os.environ.get("BENCH_QUICK", "") not in ("", "0")
        self.n = env_int("BENCH_N", 500 if quick else 10000)
        self.rounds = env_int("BENCH_ROUNDS", 1 if quick else 3)
        self.jobs = env_int("BENCH_J", 2)
        self.seed = env_int("BENCH_SEED", 42)
        # The other sizes scale with N unless set: with N = 10 000 they are
        # the DESIGN.md sizes (1 000 runs of history, a 100 000-item plan).
        self.history = env_int("BENCH_HISTORY", max(10, self.n // 10))
        self.rss_n = env_int("BENCH_RSS_N", min(100000, self.n * 10))
        self.ticks = env_int("BENCH_TICKS", 20 if quick else 100)
        self.repeats = env_int("BENCH_REPEATS", 5)
        self.timeout = env_int("BENCH_TIMEOUT", 1800)
        self.sh = os.environ.get("BENCH_SH", "1") not in ("", "0")
        self.strace_n = env_int("BENCH_STRACE_N", min(self.n, 1000))
        default = "dag cpu tick submit rss verify" if shutil.which("perf") \
            else "dag tick submit rss verify"
        phases = os.environ.get("BENCH_PHASES", default)
        self.phases = phases.replace(",", " ").split()
        self.tools = os.environ.get("BENCH_TOOLS",
                                    "make ninja agora floor").split()
        self.dir = os.path.abspath(os.environ.get(
            "BENCH_DIR", os.path.join(HERE, "out")))
        self.keep = os.environ.get("BENCH_KEEP", "") not in ("", "0")
        if self.n < 1 or self.rounds < 1 or self.jobs < 1:
            sys.exit("bench: BENCH_N, BENCH_ROUNDS and BENCH_J must be >= 1")
        for p in self.phases:
            if p not in PHASES:
                sys.exit("bench: unknown phase %r in BENCH_PHASES" % p)


def run(argv, timeout=None, **kw):
    """subprocess.run with stdin closed; returns CompletedProcess."""
    return subprocess.run(argv, stdin=subprocess.DEVNULL, timeout=timeout,
                          **kw)


def must(argv, **kw):
    r = run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            **kw)
    if r.returncode != 0:
        sys.exit("bench: %s exited %d: %s" % (" ".join(argv), r.returncode,
                                                r.stderr.strip()))
    return r.stdout


def timed(argv, **kw):
    """Wall seconds of one command and its CompletedProcess."""
    t0 = time.monotonic()
    r = run(argv, **kw)
    return time.monotonic() - t0, r


def agora(verb):
    return os.path.join(BIN, "agora-" + verb)


def rmtree(path):
    shutil.rmtree(path, ignore_errors=True)


TRASH = None    # set by main()


def retire(path):
    """Move a tree out of the way instead of deleting it now.  On ext4
    without a journal, as on this project's machines, the inode allocator
    skips every inode deleted in the last 60 s (300 s more while its table
    block is dirty), one table look-up each: deleting the last round's
    10 000-item tree would bill the next round, whichever tool it is, for
    that round's cleanup.  main() deletes the trash when all is measured."""
    if not os.path.lexists(path):
        return
    if TRASH is None:
        rmtree(path)
        return
    os.makedirs(TRASH, exist_ok=True)
    n = len(os.listdir(TRASH))
    while os.path.lexists(os.path.join(TRASH, str(n))):
        n += 1
    os.rename(path, os.path.join(TRASH, str(n)))


def fresh_out(dag):
    for name in ("out", ".ninja_log", ".ninja_deps"):
        p = os.path.join(dag, name)
        if os.path.isdir(p):
            retire(p)
        elif os.path.exists(p):
            os.unlink(p)
    os.mkdir(os.path.join(dag, "out"))


def count_out(dag):
    return len(os.listdir(os.path.join(dag, "out")))


def init_state(state, jobs):
    retire(state)
    must([agora("init"), state])
    conf = os.path.join(state, "agora.conf")
    if shutil.which("git"):
        must(["git", "config", "-f", conf, "queue.default.concurrency",
              str(jobs)])
    elif jobs != 2:
        sys.exit("bench: git is needed to set a concurrency other than 2")


def stop(proc, wrapped=False):
    if proc is None or proc.poll() is not None:
        return
    if wrapped:
        # perf or strace runs serve: signal serve, and the wrapper ends
        # with it after writing its report.
        try:
            with open("/proc/%d/task/%d/children" % (proc.pid, proc.pid)) as f:
                kids = [int(x) for x in f.read().split()]
        except OSError:
            kids = []
        for k in kids:
            os.kill(k, signal.SIGTERM)
    else:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        log("agora-serve ignored SIGTERM for 30 s; killing it")
        proc.kill()
        proc.wait()


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def snapshot_bin(cfg):
    """Copy bin/ so that a rebuild during a long run cannot change the
    programs between rounds (agora-reconcile finds agora-exec beside it)."""
    src = os.path.join(TOP, "bin")
    dst = os.path.join(cfg.dir, "bin")
    rmtree(dst)
    shutil.copytree(src, dst)
    return dst, time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(
        os.path.getmtime(os.path.join(src, "agora-reconcile"))))


def fmt_s(x):
    return "-" if x is None else "%.2f s" % x


def fmt_ms(x):
    return "-" if x is None else "%.1f ms" % (x * 1000)


def median(xs):
    return statistics.median(xs) if xs else None


def parse_time_v(path):
    """Max RSS in KiB from a GNU time -v report."""
    with open(path) as f:
        for line in f:
            m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", line)
            if m:
                return int(m.group(1))
    return None


def measure_rss(argv, report, **kw):
    """(wall s, max RSS KiB, CompletedProcess) of one command.

    GNU time -v when installed (its report goes to a file, so the program's
    own stderr stays apart), else the rusage that wait4 returns."""
    gnutime = "/usr/bin/time"
    if os.access(gnutime, os.X_OK):
        t, r = timed([gnutime, "-v", "-o", report] + argv, **kw)
        return t, parse_time_v(report), r
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, **kw)
    _, status, ru = os.wait4(p.pid, 0)
    t = time.monotonic() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    return t, ru.ru_maxrss, p


# ---------------------------------------------------------------- dag phase

def gen(cfg, dag, n, plan_only=False):
    argv = [sys.executable, GEN, "-n", str(n), "--seed", str(cfg.seed), dag]
    if cfg.sh:
        argv.insert(2, "--sh")
    if plan_only:
        argv.insert(2, "--plan-only")
    return must(argv).strip()


def run_make(cfg, dag, wrap=(), n=None):
    fresh_out(dag)
    t, r = timed(list(wrap) + ["make", "-j%d" % cfg.jobs], cwd=dag,
                 timeout=cfg.timeout,
                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return t, r.returncode == 0 and count_out(dag) == (n or cfg.n), \
        r.stderr[-500:]


def run_ninja(cfg, dag, wrap=(), n=None):
    fresh_out(dag)
    t, r = timed(list(wrap) + ["ninja", "-j%d" % cfg.jobs], cwd=dag,
                 timeout=cfg.timeout,
                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return t, r.returncode == 0 and count_out(dag) == (n or cfg.n), \
        r.stderr[-500:]


def build_floor(cfg):
    """Compile bench/floor.c into BENCH_DIR; None (with a note) without cc."""
    cc = os.environ.get("CC", "cc")
    exe = os.path.join(cfg.dir, "floor")
    r = run([cc, "-std=c11", "-D_GNU_SOURCE", "-O2", "-o", exe,
             os.path.join(HERE, "floor.c")],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        log("cannot build bench/floor.c with %s; skipping the floor: %s"
            % (cc, r.stdout.strip()[-300:]))
        return None
    return exe


def run_floor(cfg, exe, dag, state, layout, wrap=(), n=None):
    """floor -j J DAG; with layout "full", -l STATE as well: the least work
    a runner with agora's layout can do; "minimal": -l STATE -m."""
    fresh_out(dag)
    argv = [exe, "-j", str(cfg.jobs)]
    if layout:
        retire(state)
        argv += ["-l", state] + (["-m"] if layout == "minimal" else [])
    t, r = timed(list(wrap) + argv + [dag], timeout=cfg.timeout,
                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return t, r.returncode == 0 and count_out(dag) == (n or cfg.n), \
        r.stderr[-500:]


def run_agora(cfg, dag, plan, state, wrap=(), wrap_submit=(), n=None):
    """Submit, serve, watch; the wall time runs from submit to watch's exit.
    wrap and wrap_submit prefix serve's and submit's argv (perf, strace)."""
    n = n or cfg.n
    fresh_out(dag)
    init_state(state, cfg.jobs)
    serve = None
    note = ""
    errlog = open(os.path.join(state, "..", os.path.basename(state)
                               + ".serve.log"), "w")
    try:
        t0 = time.monotonic()
        wall0 = time.time()
        r = run(list(wrap_submit) + [agora("submit"), "-d", state, plan],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True)
        if r.returncode != 0:
            return None, False, "submit exited %d: %s" % (r.returncode,
                                                          r.stderr.strip())
        run_id = r.stdout.strip()
        serve = subprocess.Popen(list(wrap) + [agora("serve"), "-d", state],
                                 stdin=subprocess.DEVNULL,
                                 stdout=errlog, stderr=errlog)
        w = run([agora("watch"), "-d", state, "-t", str(cfg.timeout), run_id],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        t = time.monotonic() - t0
        if w.returncode != 0:
            note = "watch exited %d%s: %s" % (
                w.returncode, " (timeout)" if w.returncode == 99 else "",
                w.stderr.strip()[-300:])
    finally:
        stop(serve, bool(wrap))
        errlog.close()
    ok = w.returncode == 0 and count_out(dag) == n
    if not ok and not note:
        note = "%d of %d outputs" % (count_out(dag), n)
    tl = timeline(state, run_id, wall0, t)
    return t, ok, note if not ok else tl


def parse_at(s):
    # RFC 3339 UTC with milliseconds: 2026-11-22T03:38:43.575Z
    import datetime
    d = datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ")
    return d.replace(tzinfo=datetime.timezone.utc).timestamp()


def timeline(state, run_id, wall0, wall):
    """Where the time of one agora run went, from status.jsonl and the
    attempts' result.json files."""
    path = os.path.join(state, "runs", run_id, "status.jsonl")
    events = []
    try:
        with open(path) as f:
            for line in f:
                events.append(json.loads(line))
    except OSError:
        return None
    t = {}
    running = {}
    staged = {}   # item -> the item whose attempt it was staged behind
    done = []
    stamps = set()
    for e in events:
        at = parse_at(e["at"])
        stamps.add(e["at"])
        ev = e["event"]
        t.setdefault(ev, at)
        if ev == "item.running":
            running[e["item"]] = at
            if "after" in e:
                staged[e["item"]] = e["after"]
        elif ev == "item.done":
            done.append((at, e["item"]))
    if not done:
        return None
    done.sort()
    held = sum(at - running[i] for at, i in done if i in running)
    busy = 0.0
    items = os.path.join(state, "runs", run_id, "items")
    nres = 0
    spawn = []    # item.running logged -> worker started (result.json), not staged
    reap = []     # worker ended -> item.done logged
    handoff = []  # a staged item's start after the end of the one it followed
    done_at = {i: at for at, i in done}
    results = {}
    for item in os.listdir(items):
        rp = os.path.join(items, item, "1", "result.json")
        try:
            with open(rp) as f:
                res = json.load(f)
        except (OSError, ValueError):
            continue
        results[item] = res
        busy += res.get("durationMs", 0) / 1000.0
        nres += 1
        try:
            if item in running and item not in staged:
                spawn.append(parse_at(res["startedAt"]) - running[item])
            if item in done_at:
                reap.append(done_at[item] - parse_at(res["endedAt"]))
        except (KeyError, ValueError, TypeError):
            pass
    for item, lead in staged.items():
        try:
            handoff.append(parse_at(results[item]["startedAt"])
                           - parse_at(results[lead]["endedAt"]))
        except (KeyError, ValueError, TypeError):
            pass
    n = len(done)
    deciles = []
    start = t.get("run.submitted", wall0)
    prev = start
    for k in range(1, 11):
        at = done[max(0, n * k // 10 - 1)][0]
        deciles.append(at - prev)
        prev = at
    return {
        "events": len(events),
        "distinct_ms": len(stamps),
        "ingest": t.get("run.submitted", wall0) - wall0,
        "first_fire": t.get("item.running", start) - start,
        "tail": wall - (done[-1][0] - wall0),
        "deciles": deciles,
        "held": held / wall,
        "busy": busy / wall,
        "worker_ms": 1000.0 * busy / max(1, nres),
        "per_item_ms": 1000.0 * wall / n,
        "spawn_ms": 1000.0 * median(spawn) if spawn else None,
        "staged": len(staged),
        "handoff_ms": 1000.0 * median(handoff) if handoff else None,
        "reap_ms": 1000.0 * median(reap) if reap else None,
    }


def phase_dag(cfg, res):
    dag = os.path.join(cfg.dir, "dag")
    retire(dag)
    res["dag_desc"] = gen(cfg, dag, cfg.n)
    log(res["dag_desc"])
    if "ninja" in cfg.tools and not shutil.which("ninja"):
        log("ninja not found (apt-get install ninja-build); skipping it")
    tools = tool_runs(cfg, dag)
    times = {name: [] for name, _ in tools}
    fails = {name: [] for name, _ in tools}
    extra = {}
    loads = []
    for rnd in range(1, cfg.rounds + 1):
        # Rotate the order each round, so that a neighbour's load or a
        # cache left warm by one tool does not always favour the same one.
        k = (rnd - 1) % len(tools)
        for name, fn in tools[k:] + tools[:k]:
            # the files an earlier run left dirty are written back now,
            # not during this run (agora's fsyncs would queue behind them)
            os.sync()
            loads.append(loadavg())
            state = os.path.join(cfg.dir, "state-%s-%d"
                                 % (name.split()[-1], rnd))
            try:
                t, ok, note = fn((), (), state, cfg.n)
            except subprocess.TimeoutExpired:
                t, ok, note = None, False, "timed out after %d s" % cfg.timeout
            if ok:
                times[name].append(t)
                if isinstance(note, dict):
                    extra.setdefault(name, []).append(note)
                log("round %d: %-12s %s" % (rnd, name, fmt_s(t)))
            else:
                fails[name].append("round %d: %s" % (rnd, note))
                log("round %d: %-12s FAILED after %s: %s"
                    % (rnd, name, fmt_s(t), note))
            if not cfg.keep and name.startswith(("agora", "floor")):
                retire(state)
    res["dag"] = {"times": times, "fails": fails, "timeline": extra,
                  "load": [x for x in loads if x is not None]}


# --------------------------------------------------------------- tick phase

ONE_ITEM = {"id": "h", "items": [{
    "id": "t", "executor": "exec", "inputs": {"argv": ["true"]},
    "depends_on": [], "resourceLocks": []}]}


def idle_ticks(cfg, state):
    """Median seconds of agora-reconcile with nothing to do, and a check
    that it really had nothing to do."""
    v = must([agora("reconcile"), "-v", "-d", state]).strip()
    xs = []
    for _ in range(cfg.ticks):
        t, r = timed([agora("reconcile"), "-d", state],
                     stdout=subprocess.DEVNULL)
        if r.returncode != 0:
            sys.exit("bench: idle agora-reconcile exited %d" % r.returncode)
        xs.append(t)
    v2 = must([agora("reconcile"), "-v", "-d", state]).strip()
    xs.sort()
    return {"median": median(xs), "min": xs[0],
            "p90": xs[min(len(xs) - 1, len(xs) * 9 // 10)],
            "verbose": v2, "before": v}


def baseline_exec(cfg):
    """What spawning a trivial program costs here: the floor of a tick."""
    xs = []
    for _ in range(cfg.ticks):
        t, _ = timed(["true"])
        xs.append(t)
    return median(xs)


def phase_tick(cfg, res):
    out = {}
    out["exec_floor"] = baseline_exec(cfg)
    empty = os.path.join(cfg.dir, "state-empty")
    init_state(empty, cfg.jobs)
    out["empty"] = idle_ticks(cfg, empty)
    log("idle tick, empty tree: %s" % fmt_ms(out["empty"]["median"]))
    retire(empty)

    state = os.path.join(cfg.dir, "state-history")
    init_state(state, cfg.jobs)
    plan = os.path.join(cfg.dir, "one-item.json")
    with open(plan, "w") as f:
        json.dump(ONE_ITEM, f)
    log("submitting %d one-item runs" % cfg.history)
    t0 = time.monotonic()
    for k in range(cfg.history):
        must([agora("submit"), "-d", state, "--id", "h%05d" % k, plan])
    out["submit_all"] = time.monotonic() - t0
    log("  %d submits: %s; serving them" % (cfg.history,
                                            fmt_s(out["submit_all"])))
    errlog = open(os.path.join(cfg.dir, "state-history.serve.log"), "w")
    serve = subprocess.Popen([agora("serve"), "-d", state],
                             stdin=subprocess.DEVNULL, stdout=errlog,
                             stderr=errlog)
    t0 = time.monotonic()
    active = os.path.join(state, "active")
    inbox = os.path.join(state, "inbox", "new")
    try:
        while True:
            left = len(os.listdir(active)) + len(os.listdir(inbox))
            if left == 0:
                break
            if time.monotonic() - t0 > cfg.timeout:
                out["drain_note"] = "%d runs still active after %d s" % (
                    left, cfg.timeout)
                break
            time.sleep(0.05)
    finally:
        stop(serve)
        errlog.close()
    out["drain"] = time.monotonic() - t0
    runs = os.listdir(os.path.join(state, "runs"))
    completed = 0
    for r in runs:
        with open(os.path.join(state, "runs", r, "status.jsonl"), "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 4096))
            tail = f.read().splitlines()
            # a finished run ends in run.completed, then run.sealed
            if len(tail) >= 2 and b'"run.sealed"' in tail[-1] and \
                    b'"run.completed"' in tail[-2]:
                completed += 1
    out["completed"] = completed
    out["runs"] = len(runs)
    log("  served to completion in %s: %d of %d runs completed and sealed"
        % (fmt_s(out["drain"]), completed, len(runs)))
    out["history"] = idle_ticks(cfg, state)
    log("idle tick, %d sealed runs: %s"
        % (completed, fmt_ms(out["history"]["median"])))
    if not cfg.keep:
        retire(state)
    res["tick"] = out


# ------------------------------------------------------------- submit phase

def phase_submit(cfg, res):
    dag = os.path.join(cfg.dir, "dag")
    plan = os.path.join(dag, "plan.json")
    if not os.path.exists(plan) or "dag_desc" not in res:
        res["dag_desc"] = gen(cfg, dag, cfg.n)
    state = os.path.join(cfg.dir, "state-submit")
    init_state(state, cfg.jobs)
    out = {"validate": [], "submit": [], "bytes": os.path.getsize(plan)}
    for k in range(cfg.repeats):
        t, r = timed([agora("validate"), "-d", state, plan],
                     stdout=subprocess.DEVNULL)
        if r.returncode != 0:
            sys.exit("bench: agora-validate exited %d" % r.returncode)
        out["validate"].append(t)
        t, r = timed([agora("submit"), "-d", state, "--id", "s%d" % k, plan],
                     stdout=subprocess.DEVNULL)
        if r.returncode != 0:
            sys.exit("bench: agora-submit exited %d" % r.returncode)
        out["submit"].append(t)
    log("%d-item plan: validate %s, submit %s (medians)"
        % (cfg.n, fmt_ms(median(out["validate"])),
           fmt_ms(median(out["submit"]))))
    if not cfg.keep:
        retire(state)
    res["submit"] = out


# ------------------------------------------------------------- verify phase

def phase_verify(cfg, res):
    """An N-item run to its seal, then agora-audit of it and agora-verify
    of its bundle, each timed BENCH_REPEATS times."""
    dag = os.path.join(cfg.dir, "dag-verify")
    retire(dag)
    gen(cfg, dag, cfg.n)
    state = os.path.join(cfg.dir, "state-verify")
    t, ok, note = run_agora(cfg, dag, os.path.join(dag, "plan.json"), state)
    if not ok:
        res["verify"] = {"note": "the run failed: %s" % note}
        return
    # watch ends at run.completed; the tick that logged it seals the run,
    # and a reconcile waits for that tick's lock
    must([agora("reconcile"), "-d", state])
    run_id = "bench-%d" % cfg.n
    bundle = os.path.join(cfg.dir, "verify.bundle")
    pub = os.path.join(state, "keys", "signing.pub")
    objects = os.path.join(state, "objects.git")
    out = {"audit": [], "verify": [], "verify_objects": []}
    for _ in range(cfg.repeats):
        t, r = timed([agora("audit"), "-d", state, "--out", bundle, run_id],
                     stdout=subprocess.DEVNULL)
        if r.returncode != 0:
            sys.exit("bench: agora-audit exited %d" % r.returncode)
        out["audit"].append(t)
        t, r = timed([agora("verify"), "--key", pub, bundle],
                     stdout=subprocess.DEVNULL)
        if r.returncode != 0:
            sys.exit("bench: agora-verify exited %d" % r.returncode)
        out["verify"].append(t)
        t, r = timed([agora("verify"), "--key", pub, "--objects", objects,
                      bundle], stdout=subprocess.DEVNULL)
        if r.returncode != 0:
            sys.exit("bench: agora-verify --objects exited %d" % r.returncode)
        out["verify_objects"].append(t)
    out["bytes"] = os.path.getsize(bundle)
    with open(os.path.join(state, "runs", run_id, "status.jsonl"), "rb") as f:
        out["lines"] = sum(1 for _ in f)
    log("%d-item run: audit %s, verify %s (medians)"
        % (cfg.n, fmt_ms(median(out["audit"])), fmt_ms(median(out["verify"]))))
    if not cfg.keep:
        retire(state)
        retire(dag)
    res["verify"] = out


# ---------------------------------------------------------------- cpu phase

def perf_task_clock(path):
    """Milliseconds of task-clock in a perf stat -x, report."""
    try:
        with open(path) as f:
            for line in f:
                f_ = line.split(",")
                if len(f_) > 2 and f_[2].startswith("task-clock"):
                    return float(f_[0])
    except (OSError, ValueError):
        pass
    return None


def tool_runs(cfg, dag):
    """(name, function(wrap, state)) for every tool of phase 1."""
    tools = []
    if "make" in cfg.tools:
        tools.append(("make -j%d" % cfg.jobs,
                      lambda w, ws, st, n: run_make(cfg, dag, w, n)))
    if "ninja" in cfg.tools and shutil.which("ninja"):
        tools.append(("ninja -j%d" % cfg.jobs,
                      lambda w, ws, st, n: run_ninja(cfg, dag, w, n)))
    if "agora" in cfg.tools:
        tools.append(("agora argv", lambda w, ws, st, n: run_agora(
            cfg, dag, os.path.join(dag, "plan.json"), st, w, ws, n)))
        if cfg.sh:
            tools.append(("agora sh", lambda w, ws, st, n: run_agora(
                cfg, dag, os.path.join(dag, "plan-sh.json"), st, w, ws, n)))
    if "floor" in cfg.tools:
        exe = build_floor(cfg)
        if exe:
            tools.append(("floor", lambda w, ws, st, n: run_floor(
                cfg, exe, dag, st, None, w, n)))
            tools.append(("floor layout", lambda w, ws, st, n: run_floor(
                cfg, exe, dag, st, "full", w, n)))
            tools.append(("floor minimal", lambda w, ws, st, n: run_floor(
                cfg, exe, dag, st, "minimal", w, n)))
    return tools


def phase_cpu(cfg, res):
    """One more run of each tool under perf stat: the CPU time of the whole
    process tree (agora: submit, plus serve with every supervisor and worker
    it starts; watch is left out).  Less sensitive to neighbours than the
    wall time, and it says whether a tool is bound by CPU."""
    dag = os.path.join(cfg.dir, "dag")
    if not os.path.exists(os.path.join(dag, "Makefile")):
        res["dag_desc"] = gen(cfg, dag, cfg.n)
    out = {}
    for name, fn in tool_runs(cfg, dag):
        rep = os.path.join(cfg.dir, "perf-%s.txt" % name.replace(" ", "_"))
        rep2 = rep + ".submit"
        for p in (rep, rep2):
            if os.path.exists(p):
                os.unlink(p)
        wrap = ["perf", "stat", "-x,", "-e", "task-clock", "-o", rep]
        wrap2 = ["perf", "stat", "-x,", "-e", "task-clock", "-o", rep2]
        state = os.path.join(cfg.dir, "state-cpu")
        try:
            t, ok, note = fn(wrap, wrap2, state, cfg.n)
        except subprocess.TimeoutExpired:
            t, ok, note = None, False, "timed out"
        ms = perf_task_clock(rep)
        if ms is not None and os.path.exists(rep2):
            ms += perf_task_clock(rep2) or 0.0
        out[name] = {"wall": t, "ok": ok, "cpu_ms": ms,
                     "note": None if ok else note}
        log("cpu: %-12s wall %s, CPU %s" % (
            name, fmt_s(t), "-" if ms is None else "%.1f s" % (ms / 1000)))
        if not cfg.keep:
            retire(state)
    res["cpu"] = out


# ------------------------------------------------------------- strace phase

STRACE_CALLS = ("execve", "clone", "clone3", "vfork", "wait4", "fsync",
                "fdatasync", "openat", "mkdir", "rename", "unlink", "write",
                "flock")


def parse_strace_c(path):
    calls = {}
    with open(path) as f:
        for line in f:
            x = line.split()
            # % time, seconds, usecs/call, calls, [errors], syscall
            if len(x) >= 5 and x[-1].isidentifier() and x[3].isdigit():
                calls[x[-1]] = int(x[3])
    return calls


def phase_strace(cfg, res):
    """System calls per item, make against agora, on a smaller DAG."""
    if not shutil.which("strace"):
        log("strace not found (apt-get install strace); skipping phase")
        return
    dag = os.path.join(cfg.dir, "dag-strace")
    retire(dag)
    res["strace_desc"] = gen(cfg, dag, cfg.strace_n)
    out = {}
    for name, fn in tool_runs(cfg, dag):
        rep = os.path.join(cfg.dir, "strace-%s.txt" % name.replace(" ", "_"))
        wrap = ["strace", "-f", "-c", "-o", rep]
        state = os.path.join(cfg.dir, "state-strace")
        try:
            t, ok, note = fn(wrap, (), state, cfg.strace_n)
        except subprocess.TimeoutExpired:
            ok = False
        out[name] = parse_strace_c(rep) if ok else None
        log("strace: %s %s" % (name, "done" if ok else "FAILED"))
        if not cfg.keep:
            retire(state)
    if not cfg.keep:
        retire(dag)
    res["strace"] = out


# ---------------------------------------------------------------- rss phase

def phase_rss(cfg, res):
    dag = os.path.join(cfg.dir, "dag-rss")
    retire(dag)
    res["rss_desc"] = gen(cfg, dag, cfg.rss_n, plan_only=True)
    os.mkdir(os.path.join(dag, "out"))
    plan = os.path.join(dag, "plan.json")
    state = os.path.join(cfg.dir, "state-rss")
    init_state(state, cfg.jobs)
    report = os.path.join(cfg.dir, "time-v.txt")
    out = {"bytes": os.path.getsize(plan)}
    t, rss, r = measure_rss([agora("submit"), "-d", state, plan], report,
                            stdout=subprocess.DEVNULL)
    out["submit"] = (t, rss, r.returncode)
    log("%d-item plan: submit %s, max RSS %s KiB" % (cfg.rss_n, fmt_s(t), rss))
    t, rss, r = measure_rss([agora("reconcile"), "-v", "-d", state], report,
                            stdout=subprocess.PIPE, text=True)
    out["tick1"] = (t, rss, r.returncode, (r.stdout or "").strip())
    log("  reconcile (ingest + first tick) %s, max RSS %s KiB: %s"
        % (fmt_s(t), rss, out["tick1"][3]))
    wait_attempts(state, 10)
    t, rss, r = measure_rss([agora("reconcile"), "-v", "-d", state], report,
                            stdout=subprocess.PIPE, text=True)
    out["tick2"] = (t, rss, r.returncode, (r.stdout or "").strip())
    log("  reconcile (second tick) %s, max RSS %s KiB: %s"
        % (fmt_s(t), rss, out["tick2"][3]))
    wait_attempts(state, 10)
    if not cfg.keep:
        retire(state)
        retire(dag)
    res["rss"] = out


def wait_attempts(state, limit):
    """Let the attempts a tick fired finish before the tree goes away."""
    t0 = time.monotonic()
    runs = os.path.join(state, "runs")
    while time.monotonic() - t0 < limit:
        pending = 0
        for r in os.listdir(runs):
            items = os.path.join(runs, r, "items")
            if not os.path.isdir(items):
                continue
            for i in os.listdir(items):
                for a in os.listdir(os.path.join(items, i)):
                    d = os.path.join(items, i, a)
                    if not os.path.exists(os.path.join(d, "result.json")):
                        pending += 1
        if pending == 0:
            return
        time.sleep(0.05)


# ------------------------------------------------------------------- report

def version(argv):
    try:
        r = run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                text=True)
        return r.stdout.splitlines()[0].strip()
    except (OSError, IndexError):
        return "not found"


def report(cfg, res):
    L = []
    L.append("agora bench, %s" % time.strftime("%Y-%m-%d %H:%M:%S UTC",
                                               time.gmtime()))
    L.append("machine: %d CPUs, %s %s; %s; ninja %s; agora %s"
             % (os.cpu_count(), platform.system(), platform.release(),
                version(["make", "--version"]), version(["ninja", "--version"]),
                "bin/ built " + res["built"] + ", HEAD " +
                (run(["git", "-C", TOP, "rev-parse", "--short", "HEAD"],
                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                     text=True).stdout.strip() or "?")))
    L.append("settings: BENCH_N=%d BENCH_ROUNDS=%d BENCH_J=%d BENCH_SEED=%d "
             "BENCH_HISTORY=%d BENCH_RSS_N=%d BENCH_TICKS=%d BENCH_REPEATS=%d"
             % (cfg.n, cfg.rounds, cfg.jobs, cfg.seed, cfg.history,
                cfg.rss_n, cfg.ticks, cfg.repeats))
    if "dag" in res:
        d = res["dag"]
        L.append("")
        L.append("1. layered DAG, %s" % res["dag_desc"].split(": ", 1)[1])
        L.append("   %-22s %9s %9s %9s  %s" % ("wall time, -j%d" % cfg.jobs,
                                               "median", "min", "max", "runs"))
        for name, xs in d["times"].items():
            L.append("   %-22s %9s %9s %9s  %d ok, %d failed"
                     % (name, fmt_s(median(xs)), fmt_s(min(xs) if xs else None),
                        fmt_s(max(xs) if xs else None), len(xs),
                        len(d["fails"][name])))
        med = {k: median(v) for k, v in d["times"].items()}
        mk = med.get("make -j%d" % cfg.jobs)
        nj = med.get("ninja -j%d" % cfg.jobs)
        L.append("   ratios (DESIGN.md target: agora/make <= 1.0)")
        for a in ("agora argv", "agora sh"):
            if med.get(a) is None:
                continue
            L.append("   %-26s %s" % (a + " / make",
                                      "%.2f" % (med[a] / mk) if mk else "-"))
            L.append("   %-26s %s" % (a + " / ninja",
                                      "%.2f" % (med[a] / nj) if nj else "-"))
        fl = med.get("floor layout")
        for a in ("floor", "floor layout", "floor minimal"):
            if med.get(a) is not None and mk:
                L.append("   %-26s %.2f" % (a + " / make", med[a] / mk))
        if fl is not None and med.get("agora argv") is not None:
            L.append("   %-26s %.2f" % ("agora argv / floor layout",
                                        med["agora argv"] / fl))
        if fl is not None and mk:
            L.append("   (floor layout / make bounds agora argv / make from "
                     "below on this machine: see bench/README.md)")
        if d["load"]:
            L.append("   1-min load average before each run: %.2f to %.2f "
                     "(other work on the machine inflates every figure)"
                     % (min(d["load"]), max(d["load"])))
        for name, fl in d["fails"].items():
            for f in fl:
                L.append("   FAILED %s %s" % (name, f))
        for name, tls in d["timeline"].items():
            tl = tls[-1]
            L.append("   %s, last round: %.2f ms per item; submit to "
                     "run.submitted %.0f ms; to first item.running %.0f ms; "
                     "last item.done to watch exit %.0f ms"
                     % (name, tl["per_item_ms"], tl["ingest"] * 1000,
                        tl["first_fire"] * 1000, tl["tail"] * 1000))
            L.append("     workers busy %.2f of %d slots (touch itself %.2f ms "
                     "per item); items held running (staged ones too) %.2f of "
                     "%d; %d events in %d distinct ms stamps"
                     % (tl["busy"], cfg.jobs, tl["worker_ms"], tl["held"],
                        cfg.jobs, tl["events"], tl["distinct_ms"]))
            if tl.get("spawn_ms") is not None:
                L.append("     medians per item: item.running logged -> "
                         "worker started %.1f ms (items not staged); worker "
                         "ended -> item.done logged %.1f ms"
                         % (tl["spawn_ms"], tl["reap_ms"]))
            if tl.get("handoff_ms") is not None:
                L.append("     %d items staged behind a running one; median "
                         "from its end to their start %.1f ms"
                         % (tl["staged"], tl["handoff_ms"]))
            L.append("     seconds per tenth of the items done: "
                     + " ".join("%.2f" % x for x in tl["deciles"]))
    if "cpu" in res:
        L.append("")
        L.append("1b. CPU time of the whole process tree, one more run each "
                 "under perf stat")
        for name, c in res["cpu"].items():
            if c["cpu_ms"] is None or not c["ok"]:
                L.append("   %-22s FAILED %s" % (name, c["note"] or ""))
                continue
            L.append("   %-22s %7.2f ms CPU per item  (%.1f s CPU in %s "
                     "wall: %.2f CPUs busy)"
                     % (name, c["cpu_ms"] / cfg.n, c["cpu_ms"] / 1000,
                        fmt_s(c["wall"]), c["cpu_ms"] / 1000 / c["wall"]))
    if "strace" in res:
        st = res["strace"]
        names = [k for k in st if st[k] is not None]
        L.append("")
        L.append("1c. system calls per item (strace -f -c), %s"
                 % res["strace_desc"].split(": ", 1)[1].split(",")[0])
        L.append("   %-10s" % "" + "".join("%12s" % k for k in names))
        for call in STRACE_CALLS:
            if not any(st[k].get(call) for k in names):
                continue
            L.append("   %-10s" % call + "".join(
                "%12.1f" % (st[k].get(call, 0) / cfg.strace_n)
                for k in names))
    if "tick" in res:
        t = res["tick"]
        L.append("")
        L.append("2. idle tick: agora-reconcile with nothing to do, "
                 "median of %d calls (min, p90)" % cfg.ticks)
        L.append("   %-30s %9s" % ("fork+exec of true(1)",
                                   fmt_ms(t["exec_floor"])))
        e = t["empty"]
        L.append("   %-30s %9s  (%s, %s)" % ("empty state tree",
                                            fmt_ms(e["median"]),
                                            fmt_ms(e["min"]), fmt_ms(e["p90"])))
        h = t["history"]
        L.append("   %-30s %9s  (%s, %s)   target < 10 ms"
                 % ("%d sealed runs" % t["completed"], fmt_ms(h["median"]),
                    fmt_ms(h["min"]), fmt_ms(h["p90"])))
        L.append("   reconcile -v after the calls: %s" % h["verbose"])
        L.append("   building the history: %d agora-submit calls %s, "
                 "agora-serve ran them all in %s"
                 % (t["runs"], fmt_s(t["submit_all"]), fmt_s(t["drain"])))
        if "drain_note" in t:
            L.append("   NOTE: %s" % t["drain_note"])
    if "submit" in res:
        s = res["submit"]
        L.append("")
        L.append("3. %d-item plan (%.1f MB), median of %d calls (min, max)"
                 % (cfg.n, s["bytes"] / 1e6, cfg.repeats))
        for k in ("validate", "submit"):
            xs = s[k]
            L.append("   %-30s %9s  (%s, %s)%s"
                     % ("agora-" + k, fmt_ms(median(xs)), fmt_ms(min(xs)),
                        fmt_ms(max(xs)),
                        "   target < 200 ms (submit validates)"
                        if k == "submit" else ""))
    if "rss" in res:
        r = res["rss"]
        L.append("")
        L.append("4. %d-item plan (%.1f MB): wall time and max RSS"
                 % (cfg.rss_n, r["bytes"] / 1e6))
        for label, key in (("agora-submit", "submit"),
                           ("reconcile: ingest + 1st tick", "tick1"),
                           ("reconcile: 2nd tick", "tick2")):
            v = r[key]
            L.append("   %-30s %9s %8.1f MiB%s%s"
                     % (label, fmt_s(v[0]), (v[1] or 0) / 1024.0,
                        "   target < 64 MiB" if key == "tick1" else "",
                        "" if v[2] == 0 else "   EXIT %d" % v[2]))
            if len(v) > 3 and v[3]:
                L.append("   %-30s %s" % ("", v[3]))
    if "verify" in res:
        v = res["verify"]
        L.append("")
        if "note" in v:
            L.append("5. verify: FAILED %s" % v["note"])
        else:
            L.append("5. %d-item run sealed (%d log lines, a %.1f MB bundle), "
                     "median of %d calls (min, max)"
                     % (cfg.n, v["lines"], v["bytes"] / 1e6, cfg.repeats))
            for label, key, target in (
                    ("agora-audit --out", "audit", ""),
                    ("agora-verify", "verify", "   target < 1 s"),
                    ("agora-verify --objects", "verify_objects", "")):
                xs = v[key]
                L.append("   %-30s %9s  (%s, %s)%s"
                         % (label, fmt_ms(median(xs)), fmt_ms(min(xs)),
                            fmt_ms(max(xs)), target))
    return "\n".join(L) + "\n"


def main():
    global BIN, TRASH
    cfg = Config()
    for p in ("init", "submit", "validate", "serve", "watch", "reconcile",
              "audit", "verify"):
        if not os.access(agora(p), os.X_OK):
            sys.exit("bench: %s is missing; run make first" % agora(p))
    os.makedirs(cfg.dir, exist_ok=True)
    res = {}
    BIN, res["built"] = snapshot_bin(cfg)
    # a trash left by an earlier BENCH_KEEP=1 run is deleted at the end
    # too, never before a measurement
    TRASH = os.path.join(cfg.dir, "trash")
    spent = {}
    for name, fn in (("dag", phase_dag), ("cpu", phase_cpu),
                     ("strace", phase_strace), ("tick", phase_tick),
                     ("submit", phase_submit), ("rss", phase_rss),
                     ("verify", phase_verify)):
        if name not in cfg.phases:
            continue
        log("phase %s" % name)
        t0 = time.monotonic()
        fn(cfg, res)
        spent[name] = time.monotonic() - t0
        log("phase %s took %s" % (name, fmt_s(spent[name])))
    if not cfg.keep:
        rmtree(TRASH)
    text = report(cfg, res)
    text += "\nphases: " + ", ".join("%s %s" % (k, fmt_s(v))
                                     for k, v in spent.items()) + "\n"
    sys.stdout.write(text)
    with open(os.path.join(cfg.dir, "results.txt"), "w") as f:
        f.write(text)
    with open(os.path.join(cfg.dir, "results.json"), "w") as f:
        json.dump(res, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())

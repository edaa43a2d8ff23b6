#!/usr/bin/env python3
"""Start / stop the AWS IoT simulation: moto_server + iot_standin.py + gateway.py on free ports.

  run_sim.py run [options] -- COMMAND ...   start, run COMMAND with the sim environment, stop;
                                            exit status = COMMAND's
  run_sim.py start --dir DIR [options]      start in the background; DIR/sim.json, DIR/sim.env
  run_sim.py stop --dir DIR                 stop what `start` started (by the recorded pids)

sim.env (shell `export` lines) and sim.json name: JITRCA_SIM_IOT_URL (= AWS_ENDPOINT_URL_IOT),
JITRCA_SIM_MOTO_URL, JITRCA_SIM_GATEWAY_HOST/PORT/CA, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY,
AWS_REGION (--region, us-east-1 by default), the temporary credentials
JITRCA_SIM_TEMP_ACCESS_KEY_ID/SECRET_ACCESS_KEY/SESSION_TOKEN, and
AWS_CONFIG_FILE/AWS_SHARED_CREDENTIALS_FILE pointed at empty files so that no personal AWS profile
leaks into a test.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
AKID, SECRET = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
TEMP_AKID, TEMP_SECRET, TEMP_TOKEN = "ASIAEXAMPLETEMP", "tempSecretKeyEXAMPLE", "FQoGZXIvYXdzEXAMPLETOKEN"


_PROCS = {}  # pid -> Popen, so that started children are reaped through their Popen object


def wait_file(path, proc, what, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if os.path.exists(path):
            with open(path) as f:
                return json.load(f)
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode} before it was ready")
        time.sleep(0.05)
    raise RuntimeError(f"{what} not ready after {timeout} s")


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def stop_pids(pids, grace=10.0):
    """SIGTERM each pid, wait up to `grace` seconds, SIGKILL what is left, reap our children."""
    pids = [p for p in pids if p]
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGTERM)
    deadline = time.time() + grace
    for pid in pids:
        proc = _PROCS.pop(pid, None)
        while time.time() < deadline:
            if proc is not None and proc.poll() is not None:
                break
            if proc is None and not alive(pid):
                break
            time.sleep(0.05)
        if (proc is not None and proc.poll() is None) or (proc is None and alive(pid)):
            os.kill(pid, signal.SIGKILL)
        if proc is not None:
            proc.wait()


def start(d, standin_args, verbose=False, region="us-east-1"):
    os.makedirs(d, exist_ok=True)
    for name in ("standin.json", "gateway.json"):
        if os.path.exists(os.path.join(d, name)):
            os.unlink(os.path.join(d, name))
    empty = os.path.join(d, "aws-empty")
    open(empty, "w").close()
    log = open(os.path.join(d, "sim.log"), "ab")
    extra = ["--verbose"] if verbose else []
    si = subprocess.Popen([sys.executable, os.path.join(HERE, "iot_standin.py"), "--port", "0",
                           "--credentials", f"{AKID}:{SECRET}",
                           "--credentials", f"{TEMP_AKID}:{TEMP_SECRET}:{TEMP_TOKEN}",
                           "--ready-file", os.path.join(d, "standin.json"), "--region", region]
                          + extra + standin_args,
                          stdout=log, stderr=log, start_new_session=True)
    _PROCS[si.pid] = si
    pids = {"standin": si.pid}
    try:
        s = wait_file(os.path.join(d, "standin.json"), si, "iot_standin.py")
        pids["moto"] = s["moto_pid"]
        gw = subprocess.Popen([sys.executable, os.path.join(HERE, "gateway.py"), "--standin",
                               s["url"], "--state-dir", d, "--ready-file",
                               os.path.join(d, "gateway.json")] + extra,
                              stdout=log, stderr=log, start_new_session=True)
        _PROCS[gw.pid] = gw
        pids["gateway"] = gw.pid
        g = wait_file(os.path.join(d, "gateway.json"), gw, "gateway.py")
    except BaseException:
        log.close()
        stop_pids([pids.get("gateway"), pids["standin"], pids.get("moto")])
        raise
    log.close()
    env = {
        "JITRCA_SIM_DIR": d,
        "JITRCA_SIM_IOT_URL": s["url"], "AWS_ENDPOINT_URL_IOT": s["url"],
        "JITRCA_SIM_MOTO_URL": s["moto_url"],
        "JITRCA_SIM_GATEWAY_HOST": g["host"], "JITRCA_SIM_GATEWAY_PORT": str(g["port"]),
        "JITRCA_SIM_GATEWAY_CA": g["ca_file"],
        "AWS_ACCESS_KEY_ID": AKID, "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_REGION": region, "AWS_DEFAULT_REGION": region,
        "JITRCA_SIM_TEMP_ACCESS_KEY_ID": TEMP_AKID, "JITRCA_SIM_TEMP_SECRET_ACCESS_KEY": TEMP_SECRET,
        "JITRCA_SIM_TEMP_SESSION_TOKEN": TEMP_TOKEN,
        "AWS_CONFIG_FILE": empty, "AWS_SHARED_CREDENTIALS_FILE": empty,
        "AWS_EC2_METADATA_DISABLED": "true", "AWS_PAGER": "",
    }
    with open(os.path.join(d, "sim.json"), "w") as f:
        json.dump({"env": env, "pids": pids}, f, indent=1)
    with open(os.path.join(d, "sim.env"), "w") as f:
        for k, v in env.items():
            f.write(f"export {k}='{v}'\n")
    return env, pids


def stop(d):
    with open(os.path.join(d, "sim.json")) as f:
        pids = json.load(f)["pids"]
    stop_pids([pids.get("gateway"), pids.get("standin")])
    stop_pids([pids.get("moto")], grace=5.0)  # normally already stopped by the stand-in


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    cmd = []
    if "--" in argv:
        i = argv.index("--")
        argv, cmd = argv[:i], argv[i + 1:]
    ap = argparse.ArgumentParser(description="AWS IoT simulation: moto + stand-in + gateway")
    ap.add_argument("action", choices=("run", "start", "stop"))
    ap.add_argument("--dir", help="state directory (run: a temporary one by default)")
    ap.add_argument("--standin-arg", action="append", default=[],
                    help="extra argument for iot_standin.py (repeatable), e.g. --standin-arg=--no-quotas")
    ap.add_argument("--keep", action="store_true", help="run: keep the state directory")
    ap.add_argument("--region", default="us-east-1",
                    help="the simulated region (AWS_REGION; ARNs in its partition)")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    if args.action == "stop":
        if not args.dir:
            ap.error("stop needs --dir")
        stop(args.dir)
        return 0
    if args.action == "start":
        if not args.dir:
            ap.error("start needs --dir")
        env, _ = start(args.dir, args.standin_arg, args.verbose, args.region)
        print(json.dumps(env, indent=1))
        return 0
    if not cmd:
        ap.error("run needs -- COMMAND")
    d = args.dir or tempfile.mkdtemp(prefix="jitrca-sim-")
    env, pids = start(d, args.standin_arg, args.verbose, args.region)
    rc = 1
    try:
        rc = subprocess.call(cmd, env={**os.environ, **env})
    finally:
        stop(d)
        if not args.keep and not args.dir:
            shutil.rmtree(d, ignore_errors=True)
        elif rc != 0:
            sys.stderr.write(f"run_sim: logs in {d}/sim.log\n")
    return rc


if __name__ == "__main__":
    sys.exit(main())

# Run on the GPU machine from a folder holding a CUDA-built flashplan and the shared libraries
# the device image lacks:  LD_LIBRARY_PATH=$PWD python3 serve_cuda_check.py
# Serve on the CUDA backend: greedy completion ids through HTTP equal `flashplan run --backend cuda`.
import json, os, subprocess, sys, time, urllib.request
BIN = "./flashplan"
env = dict(os.environ, LD_LIBRARY_PATH=os.getcwd())
prompt = "The quick brown fox"
run = subprocess.run([BIN, "run", "--backend", "cuda", "-p", prompt, "-n", "16", "--json", "--ignore-eos"],
                     capture_output=True, text=True, env=env, timeout=120)
print("run rc", run.returncode, run.stderr[-300:])
ref = json.loads(run.stdout)["tokens"]
srv = subprocess.Popen([BIN, "serve", "--backend", "cuda", "--port", "8123", "-q"], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
try:
    for _ in range(120):
        try:
            urllib.request.urlopen("http://127.0.0.1:8123/health", timeout=1); break
        except Exception:
            time.sleep(0.5)
    body = json.dumps({"prompt": prompt, "max_tokens": 16, "temperature": 0, "return_token_ids": True,
                       "ignore_eos": True}).encode()
    req = urllib.request.Request("http://127.0.0.1:8123/v1/completions", body, {"Content-Type": "application/json"})
    resp = json.load(urllib.request.urlopen(req, timeout=60))
    got = resp["choices"][0]["token_ids"]
    print("run   ", ref)
    print("serve ", got)
    body = json.dumps({"messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 8, "stream": True}).encode()
    req = urllib.request.Request("http://127.0.0.1:8123/v1/chat/completions", body, {"Content-Type": "application/json"})
    chunks = [l for l in urllib.request.urlopen(req, timeout=60).read().decode().splitlines() if l.startswith("data:")]
    print("stream chunks", len(chunks), "last", chunks[-1])
    ok = got == ref and chunks[-1] == "data: [DONE]"
    print("SERVE-CUDA", "IDENTICAL" if ok else "MISMATCH")
finally:
    srv.terminate(); srv.wait(timeout=10)
    print(srv.stdout.read()[-800:])
sys.exit(0 if ok else 1)

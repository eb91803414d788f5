package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// result is what one load run measured, in the shape both wrk.lua and kitexclient print.
type result struct {
	Requests int64   `json:"requests"`
	Errors   int64   `json:"errors"`
	Seconds  float64 `json:"seconds"`
	RPS      float64 `json:"rps"`
	P50      float64 `json:"p50_ms"`
	P99      float64 `json:"p99_ms"`
	P999     float64 `json:"p999_ms"`
}

// loader puts load on one server for d and says what it measured.
type loader func(d time.Duration) (result, error)

// runTool runs a load or measurement tool to completion (within limit) and returns its
// standard output. The tool stays in the driver's process group, so Ctrl-C stops it too.
func runTool(limit time.Duration, env []string, bin string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %s: %v\n%s%s", bin, strings.Join(args, " "), err, stdout.Bytes(), stderr.Bytes())
	}
	return stdout.Bytes(), nil
}

// lastJSON decodes the last line of out that starts with '{' into v: the tools print their
// own human-readable lines before it.
func lastJSON(out []byte, v any) error {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.HasPrefix(strings.TrimSpace(lines[i]), "{") {
			return json.Unmarshal([]byte(lines[i]), v)
		}
	}
	return fmt.Errorf("no JSON line in:\n%s", out)
}

// wholeSeconds rounds d up to whole seconds, the unit wrk takes.
func wholeSeconds(d time.Duration) string {
	return strconv.Itoa(int((d+time.Second-1)/time.Second)) + "s"
}

// httpRequest is the request a wrk run repeats.
type httpRequest struct {
	method, path, body, token string
}

// wrk loads url+req.path over b.connections keep-alive connections, with one wrk thread per
// load CPU.
func (b *bench) wrk(baseURL string, req httpRequest) loader {
	return func(d time.Duration) (result, error) {
		env := []string{"BENCH_METHOD=" + req.method, "BENCH_BODY=" + req.body, "BENCH_TOKEN=" + req.token}
		out, err := runTool(d+time.Minute, env, "wrk",
			"-t", strconv.Itoa(b.loadThreads), "-c", strconv.Itoa(b.cfg.connections),
			"-d", wholeSeconds(d), "--timeout", "5s", "-s", b.wrkScript, baseURL+req.path)
		if err != nil {
			return result{}, err
		}
		var r result
		return r, lastJSON(out, &r)
	}
}

// kitexLoad loads the Thrift server at addr with kitexclient (a Kitex client over Framed),
// calling the method its load subcommand is given in args.
func (b *bench) kitexLoad(addr string, args ...string) loader {
	return func(d time.Duration) (result, error) {
		all := append([]string{"-addr", addr, "-transport", "framed", "load"}, args...)
		all = append(all, "-concurrency", strconv.Itoa(b.cfg.connections),
			"-duration", d.String(), "-warmup", "0s")
		out, err := runTool(d+time.Minute, nil, b.goBin("kitexclient"), all...)
		if err != nil {
			return result{}, err
		}
		var r result
		return r, lastJSON(out, &r)
	}
}

// envelope is both gateways' answer: {code, message, data}.
type envelope struct {
	Code    int64          `json:"code"`
	Message string         `json:"message"`
	Data    map[string]any `json:"data"`
}

// callGateway sends one JSON request to a gateway and decodes its envelope.
func callGateway(method, url, body, token string) (envelope, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return envelope{}, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return envelope{}, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var env envelope
	if err := json.Unmarshal(raw, &env); err != nil {
		return envelope{}, fmt.Errorf("%s %s: HTTP %d, not an envelope: %s", method, url, resp.StatusCode, raw)
	}
	return env, nil
}

// The user every benchmark logs in as and fetches.
const (
	benchUser     = "bench"
	benchPassword = "bench-password"
	credentials   = `{"username":"` + benchUser + `","password":"` + benchPassword + `"}`
)

// register creates the benchmark user through the gateway at baseURL.
func register(baseURL string) error {
	env, err := callGateway("POST", baseURL+"/api/user/register", credentials, "")
	if err != nil {
		return err
	}
	if env.Code != 0 {
		return fmt.Errorf("register through %s: code %d %s", baseURL, env.Code, env.Message)
	}
	return nil
}

// login logs the benchmark user in through the gateway at baseURL: the gateway's own token
// and the user's id. It retries until startTimeout, as a gateway may still be resolving the
// service; then it checks that the token fetches the user.
func login(baseURL string) (token string, id int64, err error) {
	deadline := time.Now().Add(startTimeout)
	for {
		var env envelope
		env, err = callGateway("POST", baseURL+"/api/user/login", credentials, "")
		if err == nil && env.Code == 0 {
			token, _ = env.Data["token"].(string)
			idf, _ := env.Data["user_id"].(float64)
			id = int64(idf)
			break
		}
		if err == nil {
			err = fmt.Errorf("code %d %s", env.Code, env.Message)
		}
		if time.Now().After(deadline) {
			return "", 0, fmt.Errorf("login through %s: %w", baseURL, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if token == "" || id == 0 {
		return "", 0, fmt.Errorf("login through %s: no token or user id", baseURL)
	}
	env, err := callGateway("GET", fmt.Sprintf("%s/api/user/%d", baseURL, id), "", token)
	if err != nil {
		return "", 0, err
	}
	if env.Code != 0 {
		return "", 0, errors.New("the token does not fetch the user: " + env.Message)
	}
	return token, id, nil
}

// scrapeEverySecond GETs each URL once a second, as a Prometheus scraping them would, until
// the returned function is called. The scrapes run on the load CPUs, like the driver.
func scrapeEverySecond(urls ...string) (stop func()) {
	done := make(chan struct{})
	client := &http.Client{Timeout: 5 * time.Second}
	go func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				for _, url := range urls {
					if resp, err := client.Get(url); err == nil {
						_, _ = io.Copy(io.Discard, resp.Body)
						_ = resp.Body.Close()
					}
				}
			}
		}
	}()
	return func() { close(done) }
}

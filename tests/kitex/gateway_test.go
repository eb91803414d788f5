package kitexpeer_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
)

// envelope is the gateway's answer, {code, message, data}, as the seed's SendResponse writes it.
type envelope struct {
	Code    int64          `json:"code"`
	Message string         `json:"message"`
	Data    map[string]any `json:"data"`
}

// call sends one request to the gateway; its HTTP status and envelope.
func call(t *testing.T, method, url, body, token string) (int, envelope) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewBufferString(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	env, err := decodeEnvelope(resp)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return resp.StatusCode, env
}

// decodeEnvelope reads an answer's JSON envelope.
func decodeEnvelope(resp *http.Response) (envelope, error) {
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return envelope{}, err
	}
	var env envelope
	if err := json.Unmarshal(raw, &env); err != nil {
		return envelope{}, fmt.Errorf("HTTP %d, not a JSON envelope: %s", resp.StatusCode, raw)
	}
	return env, nil
}

// unexpected is an answer that arrived but is not the one expected.
type unexpected struct{ what any }

func (u *unexpected) Error() string { return fmt.Sprintf("unexpected answer: %+v", u.what) }

// The seed's Hertz gateway in front of our Rust service: the same routes, the same answers.
func TestHertzGatewayInFrontOfTheRustService(t *testing.T) {
	e := startEtcd(t)
	rustUserService(t, e)
	userRoutesWork(t, hertzGateway(t, e))
}

// userRoutesWork registers, logs in and fetches a user through the gateway at gw, with the
// errors of each route; both gateways answer alike.
func userRoutesWork(t *testing.T, gw string) {
	t.Helper()
	creds := `{"username":"hertz-fan","password":"secret1"}`
	status, created := call(t, "POST", gw+"/api/user/register", creds, "")
	if status != http.StatusOK || created.Code != 0 {
		t.Fatalf("register: %d %+v", status, created)
	}
	if _, again := call(t, "POST", gw+"/api/user/register", creds, ""); again.Code != 10003 {
		t.Errorf("register a taken name: %+v", again)
	}
	if _, wrong := call(t, "POST", gw+"/api/user/login", `{"username":"hertz-fan","password":"wrong-one"}`, ""); wrong.Code != 10004 {
		t.Errorf("login with a wrong password: %+v", wrong)
	}
	_, login := call(t, "POST", gw+"/api/user/login", creds, "")
	token, _ := login.Data["token"].(string)
	id, _ := login.Data["user_id"].(float64)
	if login.Code != 0 || token == "" || id == 0 {
		t.Fatalf("login: %+v", login)
	}

	path := gw + "/api/user/" + jsonNumber(id)
	_, got := call(t, "GET", path, "", token)
	if user, _ := got.Data["user"].(map[string]any); got.Code != 0 || user["username"] != "hertz-fan" {
		t.Errorf("fetch the user: %+v", got)
	}
	if status, _ := call(t, "GET", path, "", ""); status != http.StatusUnauthorized {
		t.Errorf("fetch without a token: HTTP %d", status)
	}
	if _, missing := call(t, "GET", gw+"/api/user/999999", "", token); missing.Code != 10002 {
		t.Errorf("fetch a missing user: %+v", missing)
	}
	if status, _ := call(t, "POST", gw+"/api/user/register", `{"username":"x","password":"123"}`, ""); status != http.StatusBadRequest {
		t.Errorf("register with a 3-byte password: HTTP %d", status)
	}
}

func jsonNumber(f float64) string {
	b, _ := json.Marshal(int64(f))
	return string(b)
}

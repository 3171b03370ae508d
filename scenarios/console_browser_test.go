package scenarios_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"

	"github.com/smart-sim/sim/scenarios"
)

const chromiumPath = "/usr/bin/chromium"

// browserContext starts headless Chromium for one test. Without a Chromium
// binary the test is skipped, unless CI is set: there it must run.
func browserContext(t *testing.T) context.Context {
	t.Helper()
	exe := chromiumPath
	if _, err := os.Stat(exe); err != nil {
		if p, lerr := exec.LookPath("chromium"); lerr == nil {
			exe = p
		} else {
			if os.Getenv("CI") != "" {
				t.Fatalf("no Chromium at %s or on PATH, and CI is set: install chromium (apt-get install -y chromium)", chromiumPath)
			}
			t.Skipf("no Chromium at %s or on PATH: browser tests skipped (install chromium to run them)", chromiumPath)
		}
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1280, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(t.Context(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })
	if err := chromedp.Run(ctx); err != nil { // start the browser now
		t.Fatalf("start Chromium: %v", err)
	}
	return ctx
}

// artifactsDir is where screenshots go: $SIM_ARTIFACTS, else a temporary
// directory kept in the test log.
func artifactsDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("SIM_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(t.TempDir(), "artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots in %s", dir)
	return dir
}

func screenshot(dir, name string) chromedp.Action {
	return chromedp.ActionFunc(func(ctx context.Context) error {
		var png []byte // quality 100 makes a PNG
		if err := chromedp.FullScreenshot(&png, 100).Do(ctx); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644)
	})
}

// approve clicks the real consent form's Allow button of one authorization
// server, after checking the page belongs to it.
func approve(dir, shot, origin string) chromedp.Tasks {
	return chromedp.Tasks{
		waitLocation(origin),
		chromedp.WaitVisible(`button[name=decision][value=approve]`, chromedp.ByQuery),
		screenshot(dir, shot),
		chromedp.Click(`button[name=decision][value=approve]`, chromedp.ByQuery),
	}
}

// waitLocation waits until the tab shows a page under prefix (a click that
// navigates returns before the next page is there).
func waitLocation(prefix string) chromedp.Action {
	return chromedp.ActionFunc(func(ctx context.Context) error {
		var loc string
		for {
			if err := chromedp.Location(&loc).Do(ctx); err != nil {
				return err
			}
			if strings.HasPrefix(loc, prefix) {
				return nil
			}
			select {
			case <-ctx.Done():
				return &unexpectedPage{want: prefix, got: loc}
			case <-time.After(50 * time.Millisecond):
			}
		}
	})
}

type unexpectedPage struct{ want, got string }

func (e *unexpectedPage) Error() string { return "expected a page of " + e.want + ", got " + e.got }

func originOf(u string) string { return strings.TrimSuffix(u, "/fhir") }

// TestConsoleInChromium walks the newcomer's path in a real browser: sign in
// to the simulated EHR, open a shared patient's chart, launch the sample app
// in the EHR frame, approve at both authorization servers, see data from
// both servers, find OtherAS's introspection in the trace, and see the
// refusal for an absent patient.
func TestConsoleInChromium(t *testing.T) {
	ctx := browserContext(t)
	start, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	r, err := scenarios.Start(start, scenarios.DefaultWorld(), scenarios.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(context.Background()) })
	ready := r.Ready()
	w := world(t, r)
	shared := patientOfClass(t, w, "shared")
	absent := patientOfClass(t, w, "absent")
	dir := artifactsDir(t)
	ctx, cancelRun := context.WithTimeout(ctx, 60*time.Second)
	defer cancelRun()
	console := ready.Console

	var text string
	steps := []struct {
		name  string
		tasks chromedp.Tasks
	}{
		{"home", chromedp.Tasks{
			chromedp.Navigate(console + "/"),
			chromedp.WaitVisible(`button[data-copy]`, chromedp.ByQuery), // JS un-hides copy buttons
			chromedp.Text(`main`, &text, chromedp.ByQuery),
			screenshot(dir, "01-home"),
		}},
		{"sign in to the EHR", chromedp.Tasks{
			chromedp.Navigate(console + "/ehr"),
			chromedp.SendKeys(`#username`, "dr.smith", chromedp.ByID),
			chromedp.SendKeys(`#password`, "smart", chromedp.ByID),
			chromedp.Submit(`#password`, chromedp.ByID),
			chromedp.WaitVisible(`table.c-patients`, chromedp.ByQuery),
			screenshot(dir, "02-ehr-patients"),
		}},
		{"open a shared patient's chart", chromedp.Tasks{
			chromedp.Navigate(console + "/ehr?class=shared"),
			chromedp.Click(`a[data-ehr-id="`+shared.EHRID+`"]`, chromedp.ByQuery),
			chromedp.WaitVisible(`#launch-frame`, chromedp.ByQuery),
			screenshot(dir, "03-chart"),
		}},
		{"launch the sample app in the EHR frame and approve at the EHR", chromedp.Tasks{
			chromedp.Click(`#launch-frame`, chromedp.ByQuery),
			approve(dir, "04-consent-ehr", originOf(ready.EHRFHIR)),
		}},
		{"approve at OtherAS", approve(dir, "05-consent-other", originOf(ready.OtherFHIR))},
		{"see data from both servers", chromedp.Tasks{
			chromedp.WaitVisible(`#result[data-state=done]`, chromedp.ByQuery),
			chromedp.Text(`#result`, &text, chromedp.ByQuery),
			screenshot(dir, "06-sample-app-result"),
		}},
	}
	for _, s := range steps {
		if err := chromedp.Run(ctx, s.tasks); err != nil {
			var loc string
			_ = chromedp.Run(ctx, chromedp.Location(&loc), screenshot(dir, "failed"))
			t.Fatalf("%s: %v (at %s)", s.name, err, loc)
		}
	}
	for _, want := range []string{"Patient", shared.EHRID, *shared.OtherID, "Launch-token claims", "launch_token"} {
		if !strings.Contains(text, want) {
			t.Errorf("sample app result lacks %q", want)
		}
	}
	var otherState, loc string
	if err := chromedp.Run(ctx, chromedp.AttributeValue(`#result`, "data-other", &otherState, nil, chromedp.ByQuery), chromedp.Location(&loc)); err != nil {
		t.Fatal(err)
	}
	if otherState != "granted" {
		t.Errorf("Other access for a shared patient: %q, want granted", otherState)
	}
	if strings.Contains(loc, "iss=") || strings.Contains(loc, "code=") {
		t.Errorf("the sample app left iss or code in the address bar: %s", loc)
	}

	// The trace: find the flow where OtherAS introspected at the EHR AS, and
	// see the exchange in its sequence diagram.
	flow := introspectionFlow(t, ready.API)
	var svg string
	if err := chromedp.Run(ctx,
		chromedp.Navigate(console+"/traces"),
		chromedp.WaitVisible(`a[data-flow="`+flow+`"]`, chromedp.ByQuery),
		screenshot(dir, "07-traces"),
		chromedp.Click(`a[data-flow="`+flow+`"]`, chromedp.ByQuery),
		chromedp.WaitVisible(`.c-diagram svg`, chromedp.ByQuery),
		chromedp.OuterHTML(`.c-diagram svg`, &svg, chromedp.ByQuery),
		chromedp.Click(`details.c-ex summary`, chromedp.ByQuery),
		screenshot(dir, "08-trace-flow"),
	); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(svg, "OtherAS") || !strings.Contains(svg, "introspect") {
		t.Errorf("the flow's diagram shows no OtherAS introspection")
	}

	if err := chromedp.Run(ctx,
		chromedp.Navigate(console+"/directories"),
		chromedp.WaitVisible(`svg.overlap`, chromedp.ByQuery),
		screenshot(dir, "09-directories"),
	); err != nil {
		t.Fatal(err)
	}

	// An absent patient, launched in a new tab: the refusal.
	newTab := chromedp.WaitNewTarget(ctx, func(i *target.Info) bool { return strings.Contains(i.URL, "/sample-app/") })
	if err := chromedp.Run(ctx,
		chromedp.Navigate(console+"/ehr/patients/"+absent.EHRID),
		chromedp.Click(`#launch-tab`, chromedp.ByQuery),
	); err != nil {
		t.Fatal(err)
	}
	var tabID target.ID
	select {
	case tabID = <-newTab:
	case <-ctx.Done():
		t.Fatal("the launch opened no new tab")
	}
	tab, cancelTab := chromedp.NewContext(ctx, chromedp.WithTargetID(tabID))
	defer cancelTab()
	var refusal string
	if err := chromedp.Run(tab,
		approve(dir, "10-consent-ehr-absent", originOf(ready.EHRFHIR)),
		waitLocation(originOf(ready.OtherFHIR)),
		chromedp.WaitVisible(`button[name=decision][value=approve]`, chromedp.ByQuery),
		screenshot(dir, "11-consent-other-refused"),
		chromedp.Click(`button[name=decision][value=approve]`, chromedp.ByQuery),
		chromedp.WaitVisible(`#refusal`, chromedp.ByQuery),
		chromedp.Text(`#refusal`, &refusal, chromedp.ByQuery),
		screenshot(dir, "12-sample-app-refusal"),
	); err != nil {
		_ = chromedp.Run(tab, screenshot(dir, "failed-tab"))
		t.Fatal(err)
	}
	for _, want := range []string{"No patient access", "user/*.rs", "refused"} {
		if !strings.Contains(refusal, want) {
			t.Errorf("refusal panel lacks %q: %s", want, refusal)
		}
	}
}

// introspectionFlow returns the id of a flow holding OtherAS's
// introspection call to the EHR AS.
func introspectionFlow(t *testing.T, api string) string {
	t.Helper()
	resp, err := http.Get(api + "/traces")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Flows []struct {
			ID     string
			Events []struct{ From, To, Label string }
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	for _, f := range body.Flows {
		for _, e := range f.Events {
			if e.From == "OtherAS" && e.To == "EHR AS" && strings.Contains(e.Label, "introspect") {
				return f.ID
			}
		}
	}
	t.Fatal("no flow holds OtherAS's introspection at the EHR AS")
	return ""
}

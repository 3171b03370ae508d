package otheras_test

import (
	"net/url"
	"testing"

	"github.com/smart-sim/sim/internal/authkit/conformance"
	"github.com/smart-sim/sim/internal/browser"
)

func TestConformance(t *testing.T) {
	conformance.RunTests(t, func(t *testing.T) conformance.Target {
		w := newWorld(t, nil)
		return conformance.Target{
			FHIRBase: w.otherCfg.FHIRBase, ClientID: "secret", ClientSecret: "s3cret", RedirectURI: appCB,
			Scope: "openid fhirUser user/*.rs offline_access",
			Authorize: func(t *testing.T, b *browser.Browser, p *browser.Page) *url.URL {
				return walk(t, b, p, "doc", "", "approve", nil)
			},
		}
	})
}

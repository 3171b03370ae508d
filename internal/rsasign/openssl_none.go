//go:build !(cgo && linux)

package rsasign

import "crypto/rsa"

func load() {}

func newNative(*rsa.PrivateKey) (native, error) { return nil, nil }

func newNativePublic(*rsa.PublicKey) (nativeVerifier, error) { return nil, nil }

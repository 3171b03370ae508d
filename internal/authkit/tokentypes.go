package authkit

// JWT typ headers that tell the kinds of token an authorization server
// signs apart.
const (
	TypAccess      = "at+jwt"           // access token (RFC 9068)
	TypLaunchToken = "launch-token+jwt" // the draft's launch-token
	TypIDToken     = "JWT"              // OpenID Connect id_token
)

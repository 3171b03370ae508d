package otheras

// EphemeralLen is the number of entries the server's in-memory store
// holds, expired ones not yet purged included.
func EphemeralLen(s *Server) int { return s.ephemeral.Len() }

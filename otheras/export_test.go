package otheras

// EphemeralLen is the number of entries the server's in-memory store
// holds, expired ones not yet purged included.
// EphemeralLen counts the entries held in memory: the ephemeral store's
// (purged by its own writes) and the live launch-token marks (purged by
// theirs, so purged here first).
func EphemeralLen(s *Server) int {
	s.ltUsed.Purge()
	return s.ephemeral.Len() + s.ltUsed.Len()
}

// VerificationKeys is the number of signature checks kept for the
// trusted EHRs' keys.
func VerificationKeys(s *Server) int {
	n := 0
	for _, c := range s.ehrs {
		c.mu.Lock()
		n += len(c.keys)
		c.mu.Unlock()
	}
	return n
}

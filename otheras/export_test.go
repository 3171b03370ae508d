package otheras

// EphemeralLen counts the entries held in memory: the ephemeral store's
// (purged by its own writes) and the live used-code and launch-token
// marks (purged by theirs, so purged here first).
func EphemeralLen(s *Server) int {
	s.ltUsed.Purge()
	s.codes.Marks().Purge()
	return s.ephemeral.Len() + s.ltUsed.Len() + s.codes.Marks().Len()
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

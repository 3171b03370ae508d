package ehr

// EphemeralLen counts the entries held in memory: the ephemeral store's
// (purged by its own writes) and the live used-code and launch-token
// marks (purged by theirs, so purged here first).
func EphemeralLen(s *Server) int {
	s.ltUsed.Purge()
	s.codes.Marks().Purge()
	return s.ephemeral.Len() + s.ltUsed.Len() + s.codes.Marks().Len()
}

package trace

// Broker is the authorization proxy of flows.md direction D: an AS in
// front of the EHR AS and OtherAS. Diagrams draw it after the parties of
// Parties, as any party not listed there.
const Broker Party = "Broker"

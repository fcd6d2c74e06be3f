package customerio

// EventID is eventID, for the conformance harness: it pairs the events
// Customer.io received with the messageIds they were sent with.
var EventID = eventID

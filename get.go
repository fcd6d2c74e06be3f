package opentrack

import "net/http"

// serveGet answers GET and HEAD requests. The Tracking API's routes take
// POST only.
func (h *Handler) serveGet(w http.ResponseWriter, r *http.Request) {
	seg := lastSegment(r.URL.Path)
	if _, ok := routes[seg]; !ok && seg != metricsRoute {
		writeError(w, http.StatusNotFound, "Not found")
		return
	}
	w.Header().Set("Allow", "POST, OPTIONS")
	writeError(w, http.StatusMethodNotAllowed, "Method not allowed")
}

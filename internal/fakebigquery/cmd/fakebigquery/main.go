// Command fakebigquery serves the BigQuery REST stand-in of package
// fakebigquery on a local port, to try the collector without a Google Cloud
// project:
//
//	go run ./internal/fakebigquery/cmd/fakebigquery -addr 127.0.0.1:9050
//	BIGQUERY_EMULATOR_HOST=http://127.0.0.1:9050 BIGQUERY_PROJECT_ID=local BIGQUERY_DATASET=segment go run ./examples/server
//
// Everything is kept in memory. GET /fakebigquery/dump shows the tables,
// rows included, as JSON.
package main

import (
	"flag"
	"log"
	"net/http"

	"github.com/opentrackhq/opentrack/internal/fakebigquery"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9050", "address to listen on")
	flag.Parse()
	log.Printf("fakebigquery: serving the BigQuery REST API at http://%s/bigquery/v2/ (dump: http://%s/fakebigquery/dump)", *addr, *addr)
	log.Fatal(http.ListenAndServe(*addr, fakebigquery.NewHandler(nil)))
}

package accounting

import (
	"fmt"
	"time"
)

// Prices are list prices in US dollars per unit. They change; check the
// AWS pricing pages before quoting a figure.
type Prices struct {
	// Region names where the prices apply.
	Region string
	// SQSRequest is the price of one SQS request (standard queue).
	SQSRequest float64
	// DynamoDBWriteUnit and DynamoDBReadUnit are on-demand prices of one
	// write request unit and one read request unit.
	DynamoDBWriteUnit, DynamoDBReadUnit float64
}

// USEast1 are the us-east-1 list prices weir's cost figures use: SQS $0.40
// per million requests, DynamoDB on-demand $0.625 per million write units
// and $0.125 per million read units.
var USEast1 = Prices{
	Region:            "us-east-1",
	SQSRequest:        0.40 / 1e6,
	DynamoDBWriteUnit: 0.625 / 1e6,
	DynamoDBReadUnit:  0.125 / 1e6,
}

// Estimate is what a set of calls would cost at list prices. It is an
// estimate: free tiers, the SQS billing of failed requests and the
// capacity of items larger than the minimum after a failed conditional
// write are not modelled, and services other than SQS and DynamoDB are
// counted but not priced.
type Estimate struct {
	Prices Prices
	// SQSRequests are billed SQS requests (64 KiB chunks).
	SQSRequests int64
	// ReadUnits and WriteUnits are DynamoDB capacity units.
	ReadUnits, WriteUnits float64
	// Unpriced counts requests to other services.
	Unpriced int64
	// Unmetered counts DynamoDB requests priced at their minimum because
	// the endpoint reported no consumed capacity.
	Unmetered int64
	// SQS and DynamoDB are the dollar amounts.
	SQS, DynamoDB float64
}

// Total is the estimated cost in US dollars.
func (e Estimate) Total() float64 { return e.SQS + e.DynamoDB }

// EstimateCost prices usage at p.
func EstimateCost(usage map[Key]Usage, p Prices) Estimate {
	e := Estimate{Prices: p}
	for k, u := range usage {
		switch k.Service {
		case sqsService:
			e.SQSRequests += u.Billed
		case dynamoService:
			e.ReadUnits += u.ReadUnits
			e.WriteUnits += u.WriteUnits
			e.Unmetered += u.Unmetered
		default:
			e.Unpriced += u.Requests
		}
	}
	e.SQS = float64(e.SQSRequests) * p.SQSRequest
	e.DynamoDB = e.ReadUnits*p.DynamoDBReadUnit + e.WriteUnits*p.DynamoDBWriteUnit
	return e
}

// Estimate prices what the ledger has counted at p.
func (l *Ledger) Estimate(p Prices) Estimate { return EstimateCost(l.Usage(), p) }

// Scale extrapolates an estimate measured over observed to period, for
// example from a ten-minute benchmark to a job-hour or a month.
func (e Estimate) Scale(observed, period time.Duration) Estimate {
	if observed <= 0 {
		return Estimate{Prices: e.Prices}
	}
	f := float64(period) / float64(observed)
	return Estimate{
		Prices:      e.Prices,
		SQSRequests: int64(float64(e.SQSRequests)*f + 0.5),
		ReadUnits:   e.ReadUnits * f,
		WriteUnits:  e.WriteUnits * f,
		Unpriced:    int64(float64(e.Unpriced)*f + 0.5),
		Unmetered:   int64(float64(e.Unmetered)*f + 0.5),
		SQS:         e.SQS * f,
		DynamoDB:    e.DynamoDB * f,
	}
}

func (e Estimate) String() string {
	s := fmt.Sprintf("estimated cost at %s list prices: SQS $%.6f (%d billed requests) + DynamoDB $%.6f (%.1f RRU, %.1f WRU) = $%.6f",
		e.Prices.Region, e.SQS, e.SQSRequests, e.DynamoDB, e.ReadUnits, e.WriteUnits, e.Total())
	if e.Unmetered > 0 {
		s += fmt.Sprintf("; %d DynamoDB requests reported no capacity and are priced at their minimum", e.Unmetered)
	}
	if e.Unpriced > 0 {
		s += fmt.Sprintf("; %d requests to other services not priced", e.Unpriced)
	}
	return s
}

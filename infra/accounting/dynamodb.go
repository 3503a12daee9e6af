package accounting

import (
	"errors"
	"reflect"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

const dynamoService = dynamodb.ServiceID

// dynamoWrites are the operations whose reported capacity is write
// capacity (when DynamoDB reports only a total).
var dynamoWrites = map[string]bool{
	"PutItem":            true,
	"UpdateItem":         true,
	"DeleteItem":         true,
	"BatchWriteItem":     true,
	"TransactWriteItems": true,
}

var (
	returnCapacityType = reflect.TypeFor[types.ReturnConsumedCapacity]()
	capacityType       = reflect.TypeFor[*types.ConsumedCapacity]()
	capacitiesType     = reflect.TypeFor[[]types.ConsumedCapacity]()
)

// withConsumedCapacity returns a copy of a DynamoDB input that asks for
// the consumed capacity, or the input itself when it already asks or the
// operation has no such field (control-plane calls). Every data-plane input
// of the SDK has a ReturnConsumedCapacity field; reflection finds it
// without listing the operations one by one. The caller's struct is left
// alone.
func withConsumedCapacity(params any) any {
	v := reflect.ValueOf(params)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return params
	}
	f := v.Elem().FieldByName("ReturnConsumedCapacity")
	if !f.IsValid() || f.Type() != returnCapacityType || f.String() != "" {
		return params
	}
	cp := reflect.New(v.Elem().Type())
	cp.Elem().Set(v.Elem())
	cp.Elem().FieldByName("ReturnConsumedCapacity").SetString(string(types.ReturnConsumedCapacityTotal))
	return cp.Interface()
}

// dynamoCapacity adds up the capacity an attempt consumed, from the
// ConsumedCapacity field of its output (one value or one per table). When
// a successful data-plane call reports nothing (emulators do this for
// transactions), it falls back to the least the call can have cost and
// says so.
func dynamoCapacity(op string, params, result any, err error) (read, write float64, unmetered bool) {
	if err != nil {
		var failed *types.ConditionalCheckFailedException
		if errors.As(err, &failed) {
			// AWS charges a failed conditional write at least one write
			// unit (more for a large existing item) and does not report it.
			return 0, 1, false
		}
		return 0, 0, false
	}
	v := reflect.ValueOf(result)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return 0, 0, false
	}
	f := v.Elem().FieldByName("ConsumedCapacity")
	if !f.IsValid() {
		return 0, 0, false // a control-plane call: not billed per request
	}
	var cs []types.ConsumedCapacity
	switch f.Type() {
	case capacityType:
		if c, _ := f.Interface().(*types.ConsumedCapacity); c != nil {
			cs = []types.ConsumedCapacity{*c}
		}
	case capacitiesType:
		cs, _ = f.Interface().([]types.ConsumedCapacity)
	}
	if len(cs) == 0 {
		read, write = minimumCapacity(params)
		return read, write, true
	}
	for _, c := range cs {
		r, w := aws.ToFloat64(c.ReadCapacityUnits), aws.ToFloat64(c.WriteCapacityUnits)
		if r == 0 && w == 0 {
			if dynamoWrites[op] {
				w = aws.ToFloat64(c.CapacityUnits)
			} else {
				r = aws.ToFloat64(c.CapacityUnits)
			}
		}
		read += r
		write += w
	}
	return read, write, false
}

// minimumCapacity is the least a data-plane call can consume: items of up
// to 1 KB written and 4 KB read, transactions at twice the price.
func minimumCapacity(params any) (read, write float64) {
	perRead := func(consistent *bool) float64 {
		if aws.ToBool(consistent) {
			return 1
		}
		return 0.5
	}
	switch p := params.(type) {
	case *dynamodb.GetItemInput:
		return perRead(p.ConsistentRead), 0
	case *dynamodb.QueryInput:
		return perRead(p.ConsistentRead), 0
	case *dynamodb.ScanInput:
		return perRead(p.ConsistentRead), 0
	case *dynamodb.BatchGetItemInput:
		for _, ka := range p.RequestItems {
			read += perRead(ka.ConsistentRead) * float64(len(ka.Keys))
		}
		return read, 0
	case *dynamodb.TransactGetItemsInput:
		return 2 * float64(len(p.TransactItems)), 0
	case *dynamodb.PutItemInput, *dynamodb.UpdateItemInput, *dynamodb.DeleteItemInput:
		return 0, 1
	case *dynamodb.BatchWriteItemInput:
		for _, reqs := range p.RequestItems {
			write += float64(len(reqs))
		}
		return 0, write
	case *dynamodb.TransactWriteItemsInput:
		return 0, 2 * float64(len(p.TransactItems))
	}
	return 0, 0
}
